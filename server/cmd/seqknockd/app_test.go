package main

import (
	"bytes"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seqknock/seqknock/internal/cliconv"
	"github.com/seqknock/seqknock/internal/cliconv/clitest"
)

func runCLI(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = run(append([]string{"seqknockd"}, args...), &o, &e)
	return o.String(), e.String(), code
}

func TestCLIUsageAndDocs(t *testing.T) {
	var o, e bytes.Buffer
	// urfave/cli's completion reads os.Args itself, not Run's arguments.
	args := []string{"seqknockd", "--generate-bash-completion"}
	defer func(saved []string) { os.Args = saved }(os.Args)
	os.Args = args
	if code := run(args, &o, &e); code != 0 {
		t.Errorf("completion exit %d", code)
	}
	for _, c := range []string{"sync", "run", "status", "ruleset", "teardown", "check-config"} {
		if !strings.Contains(o.String(), c+"\n") {
			t.Errorf("completion lacks %s: %q", c, o.String())
		}
	}
	e.Reset()
	if code := run([]string{"seqknockd", "sync", "extra"}, &o, &e); code != 2 || !strings.Contains(e.String(), `sync: unexpected argument "extra"`) {
		t.Errorf("bad usage: exit %d %q", code, e.String())
	}
	e.Reset()
	if code := run([]string{"seqknockd", "--config", "/nonexistent.toml", "check-config"}, &o, &e); code != 1 ||
		e.String() != "seqknockd: config /nonexistent.toml: open /nonexistent.toml: no such file or directory\n" {
		t.Errorf("missing config: exit %d %q", code, e.String())
	}
}

// TestCLIConventions: --version, exit status 2 and one line for an unknown
// command or flag, --config before or after the command, help text.
func TestCLIConventions(t *testing.T) {
	if out, _, code := runCLI("--version"); code != 0 || out != "seqknockd "+cliconv.Version()+"\n" {
		t.Errorf("--version: exit %d %q", code, out)
	}
	for _, args := range [][]string{{"bogus"}, {"--bogus"}, {"sync", "--bogus"}, {"help"}, {"man"}} {
		if out, e, code := runCLI(args...); code != 2 || strings.Count(e, "\n") != 1 || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and one line", args, code, out, e)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing.toml")
	t.Setenv("SEQKNOCKD_CONFIG", "/from-env.toml")
	for _, args := range [][]string{
		{"check-config", "-c", missing},
		{"-c", missing, "check-config"},
		{"--config", "/other.toml", "check-config", "--config", missing},
		{"ruleset", "--config", missing},
		{"teardown", "--config=" + missing},
	} {
		if _, e, code := runCLI(args...); code != 1 || !strings.HasPrefix(e, "seqknockd: config "+missing+": ") {
			t.Errorf("%v: exit %d %q, want config %s", args, code, e, missing)
		}
	}
	if _, e, _ := runCLI("check-config"); !strings.HasPrefix(e, "seqknockd: config /from-env.toml: ") {
		t.Errorf("SEQKNOCKD_CONFIG ignored: %q", e)
	}
	clitest.CheckHelp(t, newApp(io.Discard, io.Discard), func(args ...string) string {
		out, _, _ := runCLI(args...)
		return out
	})
}

// TestManPage: seqknockd(8) renders without warnings and names every
// command and flag; seqknockd.toml(5) renders without warnings (the server
// package checks that it names every key).
func TestManPage(t *testing.T) {
	man := filepath.Join("..", "..", "..", "man")
	clitest.CheckManPage(t, filepath.Join(man, "seqknockd.8"), newApp(io.Discard, io.Discard))
	clitest.Lint(t, filepath.Join(man, "seqknockd.toml.5"))
}

// TestCompletion: a file flag completes file names (the binary offers
// nothing), a flag prefix completes flags.
func TestCompletion(t *testing.T) {
	defer func(saved []string) { os.Args = saved }(os.Args)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check-config", "-c", ""}, ""},
		{[]string{"sync", "--config", ""}, ""},
		{[]string{"status", "-"}, "--json\n--config\n-c\n--help\n-h\n"},
		// After "--" urfave/cli would run the command itself.
		{[]string{"teardown", "--table", "x", "--"}, ""},
		{[]string{"teardown", "--t"}, "--table\n"},
	} {
		args := append(tc.args, "--generate-bash-completion")
		os.Args = append([]string{"seqknockd"}, args...)
		if out, e, code := runCLI(args...); code != 0 || out != tc.want {
			t.Errorf("%v: exit %d %q %s, want %q", args, code, out, e, tc.want)
		}
	}
}

// TestCheckConfigTimer: check-config warns, on stderr and with exit status
// 0, when the timer unit does not fire at every period boundary.
func TestCheckConfigTimer(t *testing.T) {
	dir := t.TempDir()
	units := filepath.Join(dir, "units")
	os.Mkdir(units, 0o755)
	shipped, err := os.ReadFile(filepath.Join("..", "..", "..", "scripts", "systemd", "seqknockd-sync.timer"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(units, "seqknockd-sync.timer"), shipped, 0o644)
	defer func(saved []string) { unitDirs = saved }(unitDirs)
	unitDirs = []string{units}
	os.WriteFile(filepath.Join(dir, "alice.key"), []byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"), 0o600)
	for _, tc := range []struct{ period, warning string }{
		{"30s", ""},
		{"15s", "seqknockd: warning: " + units + "/seqknockd-sync.timer: OnCalendar=*:*:00/30 fires every 30s but period is 15s: " +
			"with the timer form, set OnCalendar=*:*:00/15 (systemctl edit seqknockd-sync.timer)\n"},
	} {
		cfg := filepath.Join(dir, "seqknockd.toml")
		os.WriteFile(cfg, []byte("period = \""+tc.period+"\"\n[[service]]\nport = 22\n[[user]]\nname = \"alice\"\nkey_file = \"alice.key\"\n"), 0o600)
		out, e, code := runCLI("check-config", "-c", cfg)
		if code != 0 || !strings.Contains(out, ": ok: ") || e != tc.warning {
			t.Errorf("period %s: exit %d %q, stderr %q, want %q", tc.period, code, out, e, tc.warning)
		}
	}
}

// TestCheckConfigOdds: check-config prints each port's odds per random
// SYN and the time to a 50% chance; it warns on stderr above 1e-6 (here
// 256 slots, lookahead 10 and tolerance 10 for one user: 31*256 = 7,936
// knocks, 1.8e-6 per SYN) and not with the defaults.
func TestCheckConfigOdds(t *testing.T) {
	dir := t.TempDir()
	defer func(saved []string) { unitDirs = saved }(unitDirs)
	unitDirs = nil
	os.WriteFile(filepath.Join(dir, "alice.key"), []byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"), 0o600)
	cfg := filepath.Join(dir, "seqknockd.toml")
	svc := "[[service]]\nport = 22\n[[user]]\nname = \"alice\"\nkey_file = \"alice.key\"\n"
	os.WriteFile(cfg, []byte(svc), 0o600)
	out, e, code := runCLI("check-config", "-c", cfg)
	for _, want := range []string{
		"guess limit: 10/second (burst 20) per source (/32, /64); global cap 1000/second (burst 5) (they bound a flood's work, not its odds: knocks are looked up first)\n",
		"port 22: 12 valid 32-bit knocks: odds per random SYN 2.8e-09; a 50% chance takes 2.48e+08 SYNs: 7.3 min at 565000 SYNs a second\n",
	} {
		if code != 0 || !strings.Contains(out, want) || e != "" {
			t.Errorf("defaults: exit %d, stderr %q, stdout lacks %q:\n%s", code, e, want, out)
		}
	}
	os.WriteFile(cfg, []byte("slots = 256\ntolerance = 10\nlookahead = 10\nguess_limit = \"0\"\n"+svc), 0o600)
	out, e, code = runCLI("check-config", "-c", cfg)
	if code != 0 || !strings.Contains(out, "port 22: 7936 valid 32-bit knocks: odds per random SYN 1.8e-06") ||
		e != "seqknockd: warning: port 22: odds per random SYN 1.8e-06 are above 1e-06: lower slots, tolerance or lookahead, split the users across ports, or set bind_source_port\n" {
		t.Errorf("high odds: exit %d, stderr %q:\n%s", code, e, out)
	}
	// The same with bind_source_port: 48-bit knocks, 64,512 times less
	// likely, no warning.
	os.WriteFile(cfg, []byte("slots = 256\ntolerance = 10\nlookahead = 10\nguess_limit = \"0\"\n"+strings.Replace(svc, "port = 22\n", "port = 22\nbind_source_port = true\n", 1)), 0o600)
	out, e, code = runCLI("check-config", "-c", cfg)
	if code != 0 || !strings.Contains(out, "port 22: 7936 valid 48-bit knocks: odds per random SYN 2.9e-11") || e != "" {
		t.Errorf("bound: exit %d, stderr %q:\n%s", code, e, out)
	}
}

// TestKeygen: seqknockd keygen is how an administrator makes a user's key
// (the client's keygen refuses sudo): mode 0600, one base64 line of 32
// bytes, an existing file kept without --force.
func TestKeygen(t *testing.T) {
	out, _, code := runCLI("keygen")
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out)); code != 0 || err != nil || len(k) != 32 {
		t.Fatalf("stdout key: %q exit %d %v", out, code, err)
	}
	p := filepath.Join(t.TempDir(), "alice.key")
	if _, e, code := runCLI("keygen", "-o", p); code != 0 {
		t.Fatalf("keygen -o: %s", e)
	}
	first, _ := os.ReadFile(p)
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", fi.Mode().Perm())
	}
	if _, e, code := runCLI("keygen", "-o", p); code != 1 || !strings.Contains(e, "--force") {
		t.Fatalf("overwrite without --force: exit %d %q", code, e)
	}
	if _, e, code := runCLI("keygen", "-o", p, "--force"); code != 0 {
		t.Fatalf("--force: %s", e)
	}
	if second, _ := os.ReadFile(p); bytes.Equal(first, second) {
		t.Fatal("--force kept the old key")
	}
}
