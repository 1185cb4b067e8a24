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

// TestSSHThroughBrokerSourcePort: an unprivileged member of the broker's
// group runs real OpenSSH with `seqknock proxy --bind-source-port` (no
// file capability) through the broker, which binds each socket to the
// source port the knock reserves, to a server whose service has
// bind_source_port: both builds, over IPv4 and IPv6. The server admits a
// knock only from its port, so a session proves the broker bound it.
func TestSSHThroughBrokerSourcePort(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 180, 2*time.Second)
	netnstest.RequireRoot(t, "useradd", "userdel", "groupadd", "setpriv")
	cfg := strings.Replace(mustRead(t, w.path("seqknockd.toml")), "port = 22\n", "port = 22\nbind_source_port = true\n", 1)
	if err := os.WriteFile(w.path("seqknockd.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	w.startDaemon()
	g := netnstest.NewGroup(t)
	dir, err := os.MkdirTemp("", "seqknock-e2e-brokersport-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "run", "broker.sock")
	brokerLog := startBroker(t, w.seqknock, sock, g.Name)
	member := netnstest.NewUser(t)
	member.Join(g)
	key, _ := os.ReadFile(w.path("alice.key"))
	id, _ := os.ReadFile(w.path("id"))
	member.WriteFile(".config/seqknock/alice.key", key, 0o600)
	member.WriteFile(".config/seqknock/client.toml", []byte(fmt.Sprintf(
		"broker = %q\n[[host]]\nmatch = \"*\"\nport = 22\nkey_file = \"~/.config/seqknock/alice.key\"\nrealm = \"lab\"\nperiod = %q\n",
		sock, w.period.String())), 0o600)
	member.WriteFile(".ssh/id", id, 0o600)

	builds := []struct{ name, bin string }{{"static", w.seqknock}, {"cgo", netnstest.BuildCgo(t, "client/cmd/seqknock")}}
	for _, b := range builds {
		for _, host := range []string{w.cl.A4, w.cl.A6} {
			for _, sport := range []bool{true, false} {
				name := fmt.Sprintf("%s %s bind-source-port=%v", b.name, host, sport)
				ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				args := []string{"-F", "/dev/null", "-i", filepath.Join(member.Home, ".ssh/id"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
					"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectionAttempts=1",
					"-o", "ConnectTimeout=8", "-o", "LogLevel=ERROR",
					"-o", fmt.Sprintf("ProxyCommand=%s proxy --bind-source-port=%v --syn-timeout 1s %%h %%p", b.bin, sport), "root@" + host, "echo", "via-broker"}
				cmd := member.Command(w.cli, "ssh", args...)
				go func() {
					<-ctx.Done()
					if cmd.Process != nil {
						cmd.Process.Kill()
					}
				}()
				out, err := cmd.CombinedOutput()
				cancel()
				if sport && (err != nil || strings.TrimSpace(string(out)) != "via-broker") {
					t.Errorf("%s: %v: %s (broker: %s)", name, err, out, brokerLog)
				}
				// Without the source port the server's 48-bit knock is not
				// met: the knock gets no answer, with the bind_source_port
				// hint among the causes; the broker refuses nothing.
				if !sport && (err == nil || !strings.Contains(string(out), "seqknock: no SYN-ACK from") ||
					!strings.Contains(string(out), "bind_source_port on the server but not here") || strings.Contains(string(out), "refused")) {
					t.Errorf("%s: %v, want no SYN-ACK with the bind_source_port hint and no refusal: %s", name, err, out)
				}
			}
		}
	}
}
