package clitest

import (
	"reflect"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestMissing: a flag of a subcommand, a hidden flag, a one-letter alias
// and a command that the page does not name are each reported; what it
// names is not.
func TestMissing(t *testing.T) {
	app := &cli.App{
		Name:  "x",
		Flags: []cli.Flag{&cli.StringFlag{Name: "config", Aliases: []string{"c"}}},
		Commands: []*cli.Command{{
			Name:  "run",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "dry-run"}, &cli.BoolFlag{Name: "secret", Hidden: true}},
			Subcommands: []*cli.Command{{
				Name:  "sub",
				Flags: []cli.Flag{&cli.IntFlag{Name: "deep"}},
			}},
		}},
	}
	page := ".B run\n.BR \\-\\-config \" FILE\"\n.B \\-\\-dry\\-run\n"
	want := []string{"x flag \\-c", "run flag \\-\\-secret", "command run sub", "run sub flag \\-\\-deep"}
	if got := Missing(page, app); !reflect.DeepEqual(got, want) {
		t.Errorf("Missing = %q, want %q", got, want)
	}
	page += ".BR \\-c \", \" \\-\\-secret\n.B sub\n\\-\\-deep\n"
	if got := Missing(page, app); len(got) != 0 {
		t.Errorf("Missing on a page naming everything = %q", got)
	}
}
