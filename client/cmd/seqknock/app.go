package main

import (
	"io"

	"github.com/seqknock/seqknock/internal/cliconv"
	"github.com/urfave/cli/v2"
)

// usagef is a mistake in how the command was called: exit status 2.
func usagef(format string, a ...any) error { return cliconv.Usagef(format, a...) }

// newApp builds the command tree. Every command's action is a thin layer over
// the client and totp packages.
func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	return newAppFor("", stdin, stdout, stderr)
}

// connecting are the commands ssh starts for every connection: run builds
// the app with that command alone when it is named first, since building
// and setting up every command's flags was a measurable part of each
// start. Their own help, errors and completion do not mention the others.
var connecting = map[string]bool{"proxy": true, "fdpass": true, "exec": true}

// newAppFor is newApp, with only the command only when it is set.
func newAppFor(only string, stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:      "seqknock",
		Usage:     "open TCP connections whose SYN carries a seqknock knock",
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Description: "seqknock derives the TCP initial sequence number that a seqknockd server " +
			"admits (ISN-v1) and puts it on the SYN of its connection, so a port that looks " +
			"filtered to everyone else answers. Use it as OpenSSH's ProxyCommand.",
		Commands: commands(only),
	}
	cliconv.Prepare(app)
	return app
}

// run runs the app and maps its error to an exit status: 0 success, 2 bad
// usage, 1 anything else. The error is one line on stderr.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	only := ""
	if len(args) > 1 && connecting[args[1]] {
		only = args[1]
	}
	return cliconv.Run(newAppFor(only, stdin, stdout, stderr), args, stderr)
}
