package cliconv

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"
)

// UsageError is a mistake in how a command was called: exit status 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, a ...any) error {
	return UsageError{fmt.Errorf(format, a...)}
}

// singleDash matches the Go flag package's "-name" in its error messages;
// our long flags are written --name. Compiled on first use, so a command
// called correctly does not pay for it at start-up.
var singleDash = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(^|\s)-([A-Za-z0-9][A-Za-z0-9-]+)`)
})

func onUsageError(c *cli.Context, err error, isSubcommand bool) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		msg = "unknown flag -" + name
	}
	msg = singleDash().ReplaceAllString(msg, "$1--$2")
	where := c.App.Name
	if isSubcommand && c.Command != nil {
		where += " " + c.Command.Name
		msg = c.Command.Name + ": " + msg
	}
	return UsageError{fmt.Errorf("%s (see %s --help)", msg, where)}
}

// Prepare applies the conventions to app: set its Name, Commands and Flags
// first. App-level flags are copied onto every command, so they may follow
// the command; read them with AppString.
func Prepare(app *cli.App) {
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version and exit"}
	cli.VersionPrinter = func(c *cli.Context) {
		fmt.Fprintf(c.App.Writer, "%s %s\n", c.App.Name, c.App.Version)
	}
	cli.FlagStringer = flagString
	app.Version = Version()
	app.HideHelpCommand = true
	app.EnableBashCompletion = true
	app.OnUsageError = onUsageError
	app.ExitErrHandler = func(*cli.Context, error) {}
	app.Action = func(c *cli.Context) error {
		if c.NArg() > 0 {
			return Usagef("unknown command %q (see %s --help)", c.Args().First(), c.App.Name)
		}
		return cli.ShowAppHelp(c)
	}
	for _, cmd := range app.Commands {
		for _, f := range app.Flags {
			if cp := commandCopy(f); cp != nil {
				cmd.Flags = append(cmd.Flags, cp)
			}
		}
		setUsageHandler(cmd)
		if cmd.BashComplete == nil {
			cmd.BashComplete = Complete(nil)
		}
	}
}

func setUsageHandler(c *cli.Command) {
	c.OnUsageError = onUsageError
	for _, s := range c.Subcommands {
		setUsageHandler(s)
	}
}

// commandCopy is the copy of an app-level flag that a command accepts after
// its name. It reads no environment: the app-level flag does that, so a
// command line value, before or after the command, wins over the
// environment.
func commandCopy(f cli.Flag) cli.Flag {
	switch f := f.(type) {
	case *cli.StringFlag:
		cp := *f
		cp.EnvVars = nil
		cp.DefaultText = strings.Trim(f.GetDefaultText(), `"`)
		if len(f.EnvVars) > 0 {
			cp.DefaultText += ", or $" + f.EnvVars[0]
		}
		return &cp
	}
	return nil
}

// AppString is the value of an app-level string flag given before or after
// the command: after wins, then before, then the environment and default.
func AppString(c *cli.Context, name string) string {
	// Lineage runs from the command's context out to the app's; a command's
	// copy of the flag is set only by the command line.
	for _, x := range c.Lineage() {
		if x.App != nil && x.IsSet(name) {
			return x.String(name)
		}
	}
	return c.String(name)
}

// Run runs app and maps its error to an exit status: 0 success, 2 bad usage,
// 1 anything else (or an ExitCoder's own status). The error is one line on
// stderr, after the app's name; an ExitCoder with an empty message (cli.Exit("",
// n)) prints nothing.
func Run(app *cli.App, args []string, stderr io.Writer) int {
	if n := len(args); n > 0 && args[n-1] == "--generate-bash-completion" && slices.Contains(args, "--") {
		// urfave/cli would run the command for real, with the completion
		// flag as an operand: after "--" there is nothing to offer.
		return 0
	}
	return exit(app.Name, app.Run(args), stderr)
}

// exit maps err to Run's exit status, and says it in one line on stderr,
// after name.
func exit(name string, err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) && err.Error() == "" {
		return ec.ExitCode()
	}
	fmt.Fprintf(stderr, "%s: %s\n", name, strings.ReplaceAll(err.Error(), "\n", " "))
	var ue UsageError
	if errors.As(err, &ue) {
		return 2
	}
	if errors.As(err, &ec) && ec.ExitCode() != 0 {
		return ec.ExitCode()
	}
	return 1
}
