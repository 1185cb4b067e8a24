package cliconv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/urfave/cli/v2"
)

func TestVersionOf(t *testing.T) {
	rev := "683e5aa3b1c2f0e1d2c3b4a5968778695a4b3c2d"
	for _, tc := range []struct {
		main     string
		settings []debug.BuildSetting
		want     string
	}{
		{"v1.2.0", []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}}, "v1.2.0 (revision 683e5aa3b1c2)"},
		{"v0.0.0-20261123164639-683e5aa3b1c2+dirty", []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"}}, "v0.0.0-20261123164639-683e5aa3b1c2+dirty (revision 683e5aa3b1c2, modified)"},
		{"(devel)", []debug.BuildSetting{{Key: "vcs.revision", Value: rev}}, "(devel) (revision 683e5aa3b1c2)"},
		{"(devel)", nil, "(devel)"},
		{"", nil, "(devel)"},
	} {
		bi := &debug.BuildInfo{Main: debug.Module{Version: tc.main}, Settings: tc.settings}
		if got := versionOf(bi); got != tc.want {
			t.Errorf("versionOf(%q, %v) = %q, want %q", tc.main, tc.settings, got, tc.want)
		}
	}
}

// TestVersionFromVCS builds seqknockd in a fresh git repository holding a
// copy of this tree (a git worktree is not stamped by the go command) and
// checks that --version names the commit.
func TestVersionFromVCS(t *testing.T) {
	netnstest.RequireTools(t, "git", "go")
	src, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sh := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, p := range []string{"go.mod", "go.sum", "totp", "nftgen", "server", "internal", "admitlog", "hostconns", "tcpsign"} {
		sh("cp", "-r", filepath.Join(src, p), dir)
	}
	sh("git", "init", "-q")
	sh("git", "add", ".")
	sh("git", "commit", "-q", "-m", "test")
	rev := sh("git", "rev-parse", "HEAD")
	sh("go", "build", "-buildvcs=true", "-o", "seqknockd", "./server/cmd/seqknockd")
	out := sh("./seqknockd", "--version")
	if want := "(revision " + rev[:12] + ")"; !strings.HasPrefix(out, "seqknockd v0.0.0-") || !strings.HasSuffix(out, want) {
		t.Errorf("--version = %q, want seqknockd v0.0.0-... %s", out, want)
	}
	// An uncommitted change says so.
	os.WriteFile(filepath.Join(dir, "untracked.go.txt"), []byte("x"), 0o644)
	sh("go", "build", "-buildvcs=true", "-o", "seqknockd", "./server/cmd/seqknockd")
	if out := sh("./seqknockd", "--version"); !strings.HasSuffix(out, ", modified)") {
		t.Errorf("modified tree: --version = %q", out)
	}
}

// testApp is a small app with an app-level flag, an env var, a command
// with its own flags, and one of each value type.
func testApp(stdout *bytes.Buffer, got *string) *cli.App {
	app := &cli.App{
		Name:   "t",
		Writer: stdout,
		Flags: []cli.Flag{&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: "/etc/t.toml",
			Usage: "config `FILE`", EnvVars: []string{"T_TEST_CONFIG"}}},
		Commands: []*cli.Command{{
			Name: "go",
			Flags: []cli.Flag{
				&cli.DurationFlag{Name: "period", Usage: "the period (default 30s)"},
				&cli.DurationFlag{Name: "wait", Usage: "wait this long"},
				&cli.DurationFlag{Name: "syn", Value: 3e9, Usage: "syn timeout"},
				&cli.IntFlag{Name: "slots", Usage: "slots"},
				&cli.BoolFlag{Name: "v", Usage: "verbose"},
				&cli.StringFlag{Name: "name", Usage: "a name"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return Usagef("go: unexpected argument %q", c.Args().First())
				}
				*got = AppString(c, "config")
				return nil
			},
		}},
	}
	Prepare(app)
	return app
}

func TestAppFlagAfterCommand(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"", []string{"go"}, "/etc/t.toml"},
		{"", []string{"-c", "/a", "go"}, "/a"},
		{"", []string{"go", "-c", "/b"}, "/b"},
		{"", []string{"--config=/a", "go", "--config", "/b"}, "/b"},
		{"/env", []string{"go"}, "/env"},
		{"/env", []string{"-c", "/a", "go"}, "/a"},
		{"/env", []string{"go", "-c", "/b"}, "/b"},
	} {
		t.Setenv("T_TEST_CONFIG", tc.env)
		if tc.env == "" {
			os.Unsetenv("T_TEST_CONFIG")
		}
		var out, errb bytes.Buffer
		var got string
		if code := Run(testApp(&out, &got), append([]string{"t"}, tc.args...), &errb); code != 0 || got != tc.want {
			t.Errorf("env %q, %v: exit %d, config %q, want %q (%s)", tc.env, tc.args, code, got, tc.want, errb.String())
		}
	}
}

func TestUsageErrorsExit2OneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `t: unknown command "bogus" (see t --help)` + "\n"},
		{[]string{"--bogus"}, "t: unknown flag --bogus (see t --help)\n"},
		{[]string{"go", "--bogus"}, "t: go: unknown flag --bogus (see t go --help)\n"},
		{[]string{"go", "--period", "x"}, `t: go: invalid value "x" for flag --period: parse error (see t go --help)` + "\n"},
		{[]string{"go", "extra"}, `t: go: unexpected argument "extra"` + "\n"},
	} {
		var out, errb bytes.Buffer
		var got string
		if code := Run(testApp(&out, &got), append([]string{"t"}, tc.args...), &errb); code != 2 || errb.String() != tc.want {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
	var out, errb bytes.Buffer
	var got string
	app := testApp(&out, &got)
	app.Commands[0].Action = func(*cli.Context) error { return os.ErrNotExist }
	if code := Run(app, []string{"t", "go"}, &errb); code != 1 || errb.String() != "t: file does not exist\n" {
		t.Errorf("failure: exit %d, %q", code, errb.String())
	}
}

func TestVersionFlag(t *testing.T) {
	var out, errb bytes.Buffer
	var got string
	if code := Run(testApp(&out, &got), []string{"t", "--version"}, &errb); code != 0 || out.String() != "t "+Version()+"\n" {
		t.Errorf("--version: exit %d, %q", code, out.String())
	}
}

func TestHelpText(t *testing.T) {
	var out, errb bytes.Buffer
	var got string
	if code := Run(testApp(&out, &got), []string{"t", "go", "--help"}, &errb); code != 0 {
		t.Fatalf("help: exit %d %s", code, errb.String())
	}
	for _, want := range []string{
		"--period DURATION  the period (default 30s)\n",
		"--wait DURATION    wait this long\n",
		"--syn DURATION     syn timeout (default: 3s)\n",
		"--slots N          slots\n",
		"-v                 verbose\n",
		"--name VALUE       a name\n",
		"-c, --config FILE  config FILE (default: /etc/t.toml, or $T_TEST_CONFIG)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	Run(testApp(&out, &got), []string{"t", "--help"}, &errb)
	if want := "-c, --config FILE  config FILE (default: /etc/t.toml) [$T_TEST_CONFIG]\n"; !strings.Contains(out.String(), want) {
		t.Errorf("app help lacks %q:\n%s", want, out.String())
	}
}
