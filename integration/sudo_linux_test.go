//go:build linux

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestSSHUnderSudo: the client under sudo, the way the README sets it up.
// A real unprivileged user, allowed by a sudoers rule to run seqknock and
// nothing else, runs real OpenSSH with `sudo -n seqknock proxy %h %p` (and
// the fdpass form) as ProxyCommand, with the user's own config, key and
// state; ssh reaches the seqknockd-protected sshd, and the state seqknock
// wrote is the user's.
func TestSSHUnderSudo(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 162, 2*time.Second)
	netnstest.RequireRoot(t, "sudo", "visudo", "useradd", "userdel", "setpriv")
	w.startDaemon()
	u := netnstest.NewUser(t)
	u.AllowSudo(w.seqknock)
	key, _ := os.ReadFile(w.path("alice.key"))
	u.WriteFile(".config/seqknock/alice.key", key, 0o600)
	u.WriteFile(".config/seqknock/client.toml", []byte(fmt.Sprintf(
		"[[host]]\nmatch = \"198.18.*\"\nport = 22\nkey_file = \"~/.config/seqknock/alice.key\"\nrealm = \"lab\"\nperiod = %q\n", w.period.String())), 0o600)
	id, _ := os.ReadFile(w.path("id"))
	u.WriteFile(".ssh/id", id, 0o600)
	for _, tc := range []struct {
		verb   string
		fdpass bool
	}{{"proxy", false}, {"fdpass", true}} {
		t.Run(tc.verb, func(t *testing.T) {
			args := []string{"-F", "/dev/null", "-i", filepath.Join(u.Home, ".ssh/id"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
				"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectionAttempts=1",
				"-o", "ConnectTimeout=8", "-o", "LogLevel=ERROR",
				"-o", "ProxyCommand=sudo -n " + w.seqknock + " " + tc.verb + " --syn-timeout 1s %h %p"}
			if tc.fdpass {
				args = append(args, "-o", "ProxyUseFdpass=yes")
			}
			args = append(args, "root@"+w.cl.A4, "echo", "through-sudo")
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			cmd := u.Command(w.cli, "ssh", args...)
			done := make(chan struct{})
			go func() {
				select {
				case <-ctx.Done():
					if cmd.Process != nil {
						cmd.Process.Kill()
					}
				case <-done:
				}
			}()
			out, err := cmd.CombinedOutput()
			close(done)
			if err != nil || strings.TrimSpace(string(out)) != "through-sudo" {
				t.Fatalf("ssh as %s through sudo seqknock %s: %v: %s", u.Name, tc.verb, err, out)
			}
		})
	}
	for p, mode := range map[string]os.FileMode{".local/state/seqknock": 0o700, ".local/state/seqknock/slots.json": 0o600} {
		fi, err := os.Lstat(filepath.Join(u.Home, p))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != u.UID || fi.Mode().Perm() != mode || !(fi.IsDir() || fi.Mode().IsRegular()) {
			t.Errorf("%s: uid %d mode %v, want uid %d mode %o", p, st.Uid, fi.Mode(), u.UID, mode)
		}
	}
}
