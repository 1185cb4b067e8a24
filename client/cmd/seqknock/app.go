package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// usageError is a mistake in how the command was called: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error {
	return usageError{fmt.Errorf(format, a...)}
}

func onUsageError(_ *cli.Context, err error, _ bool) error {
	return usageError{err}
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
		OnUsageError:         onUsageError,
		ExitErrHandler:       func(*cli.Context, error) {},
		HideHelpCommand:      true,
		EnableBashCompletion: true,
		Commands:             commands(),
	}
	for _, c := range app.Commands {
		setUsageHandler(c)
	}
	return app
}

func setUsageHandler(c *cli.Command) {
	c.OnUsageError = onUsageError
	for _, s := range c.Subcommands {
		setUsageHandler(s)
	}
}

// run runs the app and maps its error to an exit status: 0 success, 2 bad
// usage, 1 anything else. The error is one line on stderr.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := newApp(stdin, stdout, stderr).Run(args)
	if err == nil {
		return 0
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(stderr, "seqknock: %s\n", msg)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) && ec.ExitCode() != 0 {
		return ec.ExitCode()
	}
	return 1
}
