package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/seqknock/seqknock/internal/cliconv"
	"github.com/urfave/cli/v2"
)

// usagef is a mistake in how the command was called: exit status 2.
func usagef(format string, a ...any) error { return cliconv.Usagef(format, a...) }

// serviceLog is the logger of the commands that run as a service (broker,
// gateway): under journald, which stamps every line, without a time.
func serviceLog(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey && os.Getenv("JOURNAL_STREAM") != "" {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// newApp builds the command tree. Every command's action is a thin layer over
// the client and totp packages.
func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:      "seqknock",
		Usage:     "open TCP connections whose SYN carries a seqknock knock",
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Description: "seqknock derives the TCP initial sequence number that a seqknockd server " +
			"admits (ISN-v1) and puts it on the SYN of its connection, so a port that looks " +
			"filtered to everyone else answers. Use it as OpenSSH's ProxyCommand.",
		Commands: commands(),
	}
	cliconv.Prepare(app)
	return app
}

// run runs the app and maps its error to an exit status: 0 success, 2 bad
// usage, 1 anything else. The error is one line on stderr.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cliconv.Run(newApp(stdin, stdout, stderr), args, stderr)
}
