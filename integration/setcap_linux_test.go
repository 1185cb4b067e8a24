//go:build linux

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestSSHSetcapAndSudo: a user runs real OpenSSH with seqknock as its
// ProxyCommand in the two modes where seqknock sets the ISN of its own
// socket itself, a cap_net_admin+ep copy and `sudo -n seqknock` (a real
// sudoers rule), both builds, over IPv4 and IPv6, to a service without
// bind_source_port and to one with it (with --bind-source-port, which then
// binds the source port before the ISN).
func TestSSHSetcapAndSudo(t *testing.T) {
	t.Parallel()
	for i, sport := range []bool{false, true} {
		t.Run(fmt.Sprintf("bind_source_port=%v", sport), func(t *testing.T) {
			w := newWorld(t, 182+2*i, 2*time.Second)
			netnstest.RequireRoot(t, "useradd", "userdel", "setpriv", "setcap", "sudo", "visudo")
			if sport {
				cfg := strings.Replace(mustRead(t, w.path("seqknockd.toml")), "port = 22\n", "port = 22\nbind_source_port = true\n", 1)
				if err := os.WriteFile(w.path("seqknockd.toml"), []byte(cfg), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			w.startDaemon()
			u := netnstest.NewUser(t)
			key, _ := os.ReadFile(w.path("alice.key"))
			id, _ := os.ReadFile(w.path("id"))
			kf := u.WriteFile(".config/seqknock/alice.key", key, 0o600)
			u.WriteFile(".ssh/id", id, 0o600)
			builds := []struct{ name, bin string }{{"static", w.seqknock}, {"cgo", netnstest.BuildCgo(t, "client/cmd/seqknock")}}
			for _, b := range builds {
				capBin := netnstest.SetcapCopy(t, b.bin)
				u.AllowSudo(b.bin)
				for _, run := range []struct{ mode, cmd string }{{"setcap", capBin}, {"sudo", "sudo -n " + b.bin}} {
					for _, host := range []string{w.cl.A4, w.cl.A6} {
						name := fmt.Sprintf("%s %s %s", run.mode, b.name, host)
						proxy := fmt.Sprintf("%s proxy --key-file %s --realm lab --period %s --syn-timeout 1s --bind-source-port=%v %%h %%p",
							run.cmd, kf, w.period, sport)
						args := []string{"-F", "/dev/null", "-i", filepath.Join(u.Home, ".ssh/id"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
							"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectionAttempts=1",
							"-o", "ConnectTimeout=8", "-o", "LogLevel=ERROR", "-o", "ProxyCommand=" + proxy, "root@" + host, "echo", "connected"}
						ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
						cmd := u.Command(w.cli, "ssh", args...)
						go func() {
							<-ctx.Done()
							if cmd.Process != nil {
								cmd.Process.Kill()
							}
						}()
						out, err := cmd.CombinedOutput()
						cancel()
						// At most two dials a period: the period's 4
						// slots are the user's, whichever mode dials.
						time.Sleep(w.period / 2)
						if err != nil || strings.TrimSpace(string(out)) != "connected" {
							t.Errorf("%s: %v: %s", name, err, out)
						}
					}
				}
			}
		})
	}
}
