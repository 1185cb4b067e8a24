// Package clitest checks, for the tests of both binaries, that their help
// text follows the conventions of package cliconv and that their man pages
// render without warnings and document every command and flag.
package clitest

import (
	"os"
	"os/exec"
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

// CheckManPage renders the roff page at path with groff -ww and man -l and
// fails t on any warning, and on any visible command or flag of app that
// the page does not mention (a command as a bold word, a flag as \-\-name or
// \-n).
func CheckManPage(t *testing.T, path string, app *cli.App) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	Lint(t, path)
	page := string(src)
	flags := func(where string, fs []cli.Flag) {
		for _, f := range fs {
			if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
				continue
			}
			for _, n := range f.Names() {
				dash := `\-\-`
				if len(n) == 1 {
					dash = `\-`
				}
				name := dash + strings.ReplaceAll(n, "-", `\-`)
				if !strings.Contains(page, name+" ") && !strings.Contains(page, name+"\n") && !strings.Contains(page, name+`"`) {
					t.Errorf("%s: %s flag %s is not in the page", path, where, name)
				}
			}
		}
	}
	flags(app.Name, app.VisibleFlags())
	for _, c := range app.VisibleCommands() {
		if !strings.Contains(page, ".B "+strings.ReplaceAll(c.Name, "-", `\-`)) {
			t.Errorf("%s: command %s is not in the page", path, c.Name)
		}
		flags(c.Name, c.VisibleFlags())
	}
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
