// Package clitest checks, for the tests of both binaries, that their help
// text follows the conventions of package cliconv and that their man pages
// render without warnings and document every command and flag.
package clitest

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/urfave/cli/v2"
)

// CheckHelp renders the help of app and of each of its visible commands
// through run (which runs the app on the given arguments and returns its
// standard output) and fails t for each line with a placeholder that names
// nothing ("value") or a default said twice or said when it is zero.
func CheckHelp(t *testing.T, app *cli.App, run func(args ...string) string) {
	t.Helper()
	check := func(args ...string) {
		for _, line := range strings.Split(run(args...), "\n") {
			if strings.Count(line, "default") > 1 || strings.Contains(line, " value ") ||
				strings.Contains(line, "(default: 0") || strings.Contains(line, "(default: false") {
				t.Errorf("%s: %s", strings.Join(args, " "), strings.TrimSpace(line))
			}
		}
	}
	check("--help")
	for _, c := range app.VisibleCommands() {
		check(c.Name, "--help")
	}
}

// CheckManPage fails t on every command and flag of app that the roff
// page at path does not name (Missing), then renders the page with groff
// -ww and man -l and fails t on any warning (Lint).
func CheckManPage(t *testing.T, path string, app *cli.App) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Missing(string(src), app) {
		t.Errorf("%s: %s is not in the page", path, m)
	}
	Lint(t, path)
}

// Missing lists the commands and flags of app, of every command and
// subcommand, hidden ones too, that page does not name: a command as a
// bold word (.B name), a flag as \-\-name or \-n followed by a space, a
// newline or a quote.
func Missing(page string, app *cli.App) []string {
	var missing []string
	flags := func(where string, fs []cli.Flag) {
		for _, f := range fs {
			for _, n := range f.Names() {
				dash := `\-\-`
				if len(n) == 1 {
					dash = `\-`
				}
				name := dash + strings.ReplaceAll(n, "-", `\-`)
				if !strings.Contains(page, name+" ") && !strings.Contains(page, name+"\n") && !strings.Contains(page, name+`"`) {
					missing = append(missing, where+" flag "+name)
				}
			}
		}
	}
	var commands func(prefix string, cs []*cli.Command)
	commands = func(prefix string, cs []*cli.Command) {
		for _, c := range cs {
			if !strings.Contains(page, ".B "+strings.ReplaceAll(c.Name, "-", `\-`)) {
				missing = append(missing, "command "+prefix+c.Name)
			}
			flags(prefix+c.Name, c.Flags)
			commands(prefix+c.Name+" ", c.Subcommands)
		}
	}
	flags(app.Name, app.Flags)
	commands("", app.Commands)
	return missing
}

// Lint renders the roff page at path with groff -ww and with man -l and
// fails t on any warning. Without groff or man the test is skipped, or
// fails under CI=true.
func Lint(t *testing.T, path string) {
	t.Helper()
	netnstest.RequireTools(t, "groff", "man")
	for _, args := range [][]string{
		{"groff", "-ww", "-man", "-Tutf8", "-z", path},
		{"man", "--warnings", "-l", "-Tutf8", path},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "MANWIDTH=80", "MAN_KEEP_STDERR=1")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("%s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
	}
}

// CheckConfigKeys fails t for each TOML key of typ (and of the structs of
// its arrays of tables) that the section named section of the roff page
// at path does not name in bold (.B or .BR), and when typ has fewer than
// min keys: a sign that the walk found nothing.
func CheckConfigKeys(t *testing.T, path, section string, typ reflect.Type, min int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	start := strings.Index(page, "\n.SH "+section+"\n")
	if start < 0 {
		t.Fatalf("%s: no %s section", path, section)
	}
	text := page[start+1:]
	if end := strings.Index(text[1:], "\n.SH "); end >= 0 {
		text = text[:end+1]
	}
	var keys []string
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
				walk(f.Type.Elem())
				continue
			}
			if key := strings.Split(f.Tag.Get("toml"), ",")[0]; key != "" {
				keys = append(keys, key)
			}
		}
	}
	walk(typ)
	if len(keys) < min {
		t.Fatalf("found only %d keys in %s: %v", len(keys), typ, keys)
	}
	for _, key := range keys {
		bold := regexp.MustCompile(`(?m)^\.BR? (.* )?` + regexp.QuoteMeta(strings.ReplaceAll(key, "-", `\-`)) + `( |$)`)
		if !bold.MatchString(text) {
			t.Errorf("%s, %s: key %s is not named in bold", filepath.Base(path), section, key)
		}
	}
}
