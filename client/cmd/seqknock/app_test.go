package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seqknock/seqknock/internal/cliconv"
	"github.com/seqknock/seqknock/internal/cliconv/clitest"
)

// TestCLIConventions: --version, exit status 2 and one line for an unknown
// command or flag or a missing operand, help text.
func TestCLIConventions(t *testing.T) {
	if out, _, code := runCLI(t, "--version"); code != 0 || out != "seqknock "+cliconv.Version()+"\n" {
		t.Errorf("--version: exit %d %q", code, out)
	}
	for _, args := range [][]string{{"bogus"}, {"--bogus"}, {"proxy", "--bogus"}, {"proxy", "--period", "x"},
		{"proxy", "host"}, {"help"}, {"man"}, {"keygen", "extra"}} {
		if out, e, code := runCLI(t, args...); code != 2 || strings.Count(e, "\n") != 1 || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and one line", args, code, out, e)
		}
	}
	clitest.CheckHelp(t, newApp(nil, io.Discard, io.Discard), func(args ...string) string {
		out, _, _ := runCLI(t, args...)
		return out
	})
}

// TestManPage: seqknock(1) renders without warnings and names every
// command and flag.
func TestManPage(t *testing.T) {
	clitest.CheckManPage(t, filepath.Join("..", "..", "..", "man", "seqknock.1"), newApp(nil, io.Discard, io.Discard))
}

// complete runs what the completion scripts run for the words before the
// cursor and the word being completed, cur.
func complete(t *testing.T, cur string, before ...string) string {
	t.Helper()
	// urfave/cli's completion reads os.Args itself, not Run's arguments.
	defer func(saved []string) { os.Args = saved }(os.Args)
	args := append(append(append([]string{}, before...), cur), "--generate-bash-completion")
	os.Args = append([]string{"seqknock"}, args...)
	out, e, code := runCLI(t, args...)
	if code != 0 {
		t.Errorf("completion %v: exit %d %s", args, code, e)
	}
	return out
}

// TestCompletion: commands, flags, the configured hosts for HOST, and
// nothing after a flag that takes a file (the shell then completes file
// names).
func TestCompletion(t *testing.T) {
	out := complete(t, "")
	for _, c := range []string{"keygen", "isn", "proxy", "fdpass", "exec", "ssh-config"} {
		if !strings.Contains(out, c+"\n") {
			t.Errorf("completion lacks %q: %q", c, out)
		}
	}
	if strings.Contains(out, "man\n") || strings.Contains(out, "help\n") {
		t.Errorf("hidden commands offered: %q", out)
	}
	if out := complete(t, "--s", "proxy"); out != "--slots\n--syn-timeout\n--sign-key-file\n" {
		t.Errorf("flag completion: %q", out)
	}
	cfg := filepath.Join(t.TempDir(), "client.toml")
	os.WriteFile(cfg, []byte(`[[host]]
match = "db.example.net"
key_file = "/k"
[[host]]
match = "*.example.org"
key_file = "/k"
[[host]]
match = "198.18.7.1"
port = 2222
key_file = "/k"
`), 0o600)
	for _, cmd := range []string{"proxy", "fdpass", "exec", "ssh-config"} {
		if out := complete(t, "", cmd, "--config", cfg); out != "db.example.net\n198.18.7.1\n" {
			t.Errorf("%s HOST completion: %q", cmd, out)
		}
		if out := complete(t, "d", cmd, "--config", cfg); out != "db.example.net\n198.18.7.1\n" {
			t.Errorf("%s HOST completion of a prefix: %q", cmd, out)
		}
	}
	if out := complete(t, "", "proxy", "--config", cfg, "db.example.net"); out != "" {
		t.Errorf("PORT completion: %q", out)
	}
	// With $XDG_CONFIG_HOME/seqknock/client.toml, without --config.
	xdg := t.TempDir()
	os.Mkdir(filepath.Join(xdg, "seqknock"), 0o700)
	os.WriteFile(filepath.Join(xdg, "seqknock", "client.toml"), []byte("[[host]]\nmatch = \"x.example.net\"\nkey_file = \"/k\"\n"), 0o600)
	t.Setenv("XDG_CONFIG_HOME", xdg)
	if os.Getuid() != 0 || os.Getenv("SUDO_UID") == "" {
		if out := complete(t, "", "proxy"); out != "x.example.net\n" {
			t.Errorf("HOST completion from the default config: %q", out)
		}
	}
	for _, words := range [][]string{{"proxy", "--config"}, {"proxy", "--key-file"}, {"keygen", "-o"}, {"ssh-config", "--key-file"}, {"isn", "--key-file"}} {
		if out := complete(t, "", words...); out != "" {
			t.Errorf("%v: %q, want nothing (file names)", words, out)
		}
	}
}

// TestSSHConfigExplains: the stanza passes ssh's %n as --alias, offers
// connection sharing (ControlMaster, with the reason), prints the sudoers rule
// that --sudo needs, and a --key-file must be a usable key.
func TestSSHConfigExplains(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "client.toml")
	os.WriteFile(cfg, []byte("[[host]]\nmatch = \"prod\"\nkey_file = \"k\"\n"), 0o600)
	self, _ := os.Executable()
	out, e, code := runCLI(t, "ssh-config", "--config", cfg, "--sudo", "prod")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	for _, want := range []string{
		"Host prod\n    ProxyCommand sudo -n " + self + " proxy --config " + cfg + " --alias %n %h %p\n",
		"    # ends (ssh -O exit prod ends it; see CONNECTION SHARING in seqknock(1)).\n" +
			"    ControlMaster auto\n    ControlPath ~/.ssh/seqknock-%C\n    ControlPersist 10m\n",
		"    # sudo -n asks no password, so it needs this rule (sudo visudo -f /etc/sudoers.d/seqknock)\n" +
			"    #   %seqknock ALL=(root) NOPASSWD: " + self + "\n    # and you in group seqknock (sudo usermod -aG seqknock ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stanza lacks %q:\n%s", want, out)
		}
	}
	if out, _, _ := runCLI(t, "ssh-config", "--config", cfg, "prod"); strings.Contains(out, "sudo") {
		t.Errorf("sudo without --sudo:\n%s", out)
	}
	missing := filepath.Join(dir, "missing.key")
	if out, e, code := runCLI(t, "ssh-config", "--key-file", missing, "x.example.net"); code != 1 || out != "" || !strings.Contains(e, missing) {
		t.Errorf("missing key file: exit %d, %q, %q", code, out, e)
	}
	open := filepath.Join(dir, "open.key")
	os.WriteFile(open, []byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"), 0o644)
	if out, e, code := runCLI(t, "ssh-config", "--key-file", open, "x.example.net"); code != 1 || out != "" {
		t.Errorf("key file readable by others: exit %d, %q, %q", code, out, e)
	}
}
