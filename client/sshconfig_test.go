package client

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSSHConfigStanza: the ProxyCommand for each form, absolute paths for
// --config and --key-file, and the refusals.
func TestSSHConfigStanza(t *testing.T) {
	cfg, dir := settingsConfig(t)
	tail := func(host string) string {
		return "    ConnectionAttempts 1\n" +
			"    # Each connection spends a knock and a server allows a few per period (4 by default),\n" +
			"    # so ssh, scp and Ansible runs share one connection, kept 10 minutes after the last\n" +
			"    # ends (ssh -O exit " + host + " ends it; see CONNECTION SHARING in seqknock(1)).\n" +
			"    ControlMaster auto\n    ControlPath ~/.ssh/seqknock-%C\n    ControlPersist 10m\n"
	}
	wd, _ := os.Getwd()
	kf := filepath.Join(dir, "a.key")
	for _, tc := range []struct {
		name string
		s    Stanza
		want string
	}{
		{"proxy", Stanza{Host: "prod", Config: cfg, Self: "/bin/seqknock"},
			"Host prod\n    ProxyCommand /bin/seqknock proxy --alias %n %h %p\n" + tail("prod")},
		{"fdpass, config file made absolute", Stanza{Host: "a.example.net", Config: cfg, ConfigFile: "c.toml", Self: "/bin/seqknock", FDPass: true},
			"Host a.example.net\n    ProxyCommand /bin/seqknock fdpass --config " + filepath.Join(wd, "c.toml") + " --alias %n %h %p\n    ProxyUseFdpass yes\n" + tail("a.example.net")},
		{"key file for a host with no entry", Stanza{Host: "other", Config: cfg, KeyFile: kf, Self: "/bin/seqknock"},
			"Host other\n    ProxyCommand /bin/seqknock proxy --key-file " + kf + " --alias %n %h %p\n" + tail("other")},
		{"sudo", Stanza{Host: "prod", Config: cfg, Self: "/bin/seqknock", Sudo: true, User: "alice"},
			"Host prod\n    ProxyCommand sudo -n /bin/seqknock proxy --alias %n %h %p\n" + tail("prod") +
				"    # sudo -n asks no password, so it needs this rule (sudo visudo -f /etc/sudoers.d/seqknock)\n" +
				"    #   %seqknock ALL=(root) NOPASSWD: /bin/seqknock\n" +
				"    # and you in group seqknock (sudo usermod -aG seqknock alice); see UNDER SUDO in seqknock(1).\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SSHConfig(tc.s)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	// A home whose ControlPath would be too long for a Unix socket: the
	// shorter name, then none at all, said in a comment.
	home := "/home/" + strings.Repeat("h", 30)
	if got, _ := SSHConfig(Stanza{Host: "prod", Config: cfg, Self: "/bin/seqknock", Home: home}); !strings.Contains(got, "\n    ControlPath ~/.ssh/sk-%C\n") {
		t.Errorf("home of %d characters:\n%s", len(home), got)
	}
	// A home without ~/.ssh: ssh would fail to make the socket.
	if got, _ := SSHConfig(Stanza{Host: "prod", Config: cfg, Self: "/bin/seqknock", Home: dir}); !strings.Contains(got,
		"    # "+filepath.Join(dir, ".ssh")+" does not exist: make it (mkdir -m 700 ~/.ssh), or ssh fails to start a shared connection.\n") {
		t.Errorf("home without .ssh:\n%s", got)
	}
	os.Mkdir(filepath.Join(dir, ".ssh"), 0o700)
	if got, _ := SSHConfig(Stanza{Host: "prod", Config: cfg, Self: "/bin/seqknock", Home: dir}); strings.Contains(got, "does not exist") {
		t.Errorf("home with .ssh:\n%s", got)
	}
	home += "hhhhhh"
	if got, _ := SSHConfig(Stanza{Host: "prod", Config: cfg, Self: "/bin/seqknock", Home: home}); strings.Contains(got, "\n    Control") ||
		!strings.Contains(got, "Connection sharing is off: a ControlPath under "+home+" would be longer") {
		t.Errorf("home of %d characters:\n%s", len(home), got)
	}
	_, err := SSHConfig(Stanza{Host: "other", Config: cfg, Self: "/bin/seqknock"})
	if !errors.As(err, new(UsageError)) || !strings.Contains(err.Error(), "no [[host]] in "+cfg.Path+" matches other; add one, or give --key-file") {
		t.Errorf("host with no entry: %v", err)
	}
	missing := filepath.Join(dir, "missing.key")
	_, err = SSHConfig(Stanza{Host: "other", Config: cfg, KeyFile: missing, Self: "/bin/seqknock"})
	if err == nil || errors.As(err, new(UsageError)) || !strings.HasPrefix(err.Error(), "ssh-config: ") || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing key file: %v", err)
	}
}
