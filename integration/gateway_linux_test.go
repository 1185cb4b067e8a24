//go:build linux

package integration

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// gwWorld is a server running seqknockd with sshd on 22 and an HTTP
// service on 80 (bind_source_port), a router that masquerades and runs
// seqknock gateway, and a LAN client with no seqknock at all.
type gwWorld struct {
	*world
	rtr, lan *netnstest.NS
	up, down *netnstest.Link
	gwConfig string
	gw       *exec.Cmd
	gwLog    *netnstest.Buffer
}

const gwServerConfig = `period = "%s"
tolerance = 1
realm = "lab"
[[service]]
port = 22
[[service]]
port = 80
bind_source_port = true
[[service]]
port = 8080
[[user]]
name = "alice"
key_file = "alice.key"
`

const httpBody = "behind-the-knock\n"

func newGWWorld(t testing.TB, subnet int, extra ...int) *gwWorld {
	t.Helper()
	netnstest.RequireRoot(t, "curl", "nft", "setpriv")
	w := &gwWorld{world: newWorld(t, subnet, 2*time.Second), gwLog: &netnstest.Buffer{}}
	srvCfg := fmt.Sprintf(gwServerConfig, w.period)
	for _, p := range extra {
		srvCfg += fmt.Sprintf("[[service]]\nport = %d\n", p)
	}
	if err := os.WriteFile(w.path("seqknockd.toml"), []byte(srvCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	w.rtr, w.lan = netnstest.New(t, "gwrt"), netnstest.New(t, "gwln")
	w.up = netnstest.Connect(t, w.srv, w.rtr, subnet+2)
	w.down = netnstest.Connect(t, w.rtr, w.lan, subnet+3)
	w.rtr.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	w.rtr.MustRun("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	// A home router's masquerade: source ports kept where free.
	nat := w.rtr.Command("nft", "-f", "-")
	nat.Stdin = strings.NewReader(fmt.Sprintf("table inet nat {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname %q masquerade\n }\n}\n", w.up.BIf))
	if out, err := nat.CombinedOutput(); err != nil {
		t.Fatalf("nat: %v: %s", err, out)
	}
	w.lan.MustRun("ip", "route", "add", "default", "via", w.down.A4)
	w.lan.MustRun("ip", "-6", "route", "add", "default", "via", w.down.A6)
	// A second LAN address, not on any allow list.
	w.lan.MustRun("ip", "addr", "add", w.other4()+"/24", "dev", w.down.BIf)
	// Deprecated, so never picked as a source unless bound.
	w.lan.MustRun("ip", "-6", "addr", "add", w.other6()+"/64", "dev", w.down.BIf, "nodad", "preferred_lft", "0")
	w.startHTTP()
	w.startDaemon()
	client := fmt.Sprintf(`[[host]]
match = "srv"
port = 22
key_file = "alice.key"
realm = "lab"
period = "%[1]s"
[[host]]
match = "srv"
port = 80
key_file = "alice.key"
realm = "lab"
period = "%[1]s"
bind_source_port = true
[[host]]
match = "srv"
key_file = "alice.key"
realm = "lab"
period = "%[1]s"
`, w.period)
	if err := os.WriteFile(w.path("client.toml"), []byte(client), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := fmt.Sprintf(`listen_port = 7022
[[destination]]
address = "%[1]s"
port = 22
host = "srv"
allow = ["%[2]s"]
[[destination]]
address = "%[1]s"
port = 80
host = "srv"
allow = ["%[2]s/32"]
[[destination]]
address = "%[3]s"
port = 22
host = "srv"
allow = ["%[4]s"]
[[destination]]
address = "%[3]s"
port = 80
host = "srv"
allow = ["%[4]s"]
`, w.up.A4, w.down.B4, w.up.A6, w.down.B6)
	for _, p := range extra {
		gw += fmt.Sprintf("[[destination]]\naddress = %q\nport = %d\nhost = \"srv\"\nallow = [%q]\n", w.up.A4, p, w.down.B4)
	}
	w.gwConfig = w.path("gateway.toml")
	if err := os.WriteFile(w.gwConfig, []byte(gw), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// other4 and other6 are LAN addresses on no allow list.
func (w *gwWorld) other4() string { return strings.TrimSuffix(w.down.B4, ".2") + ".3" }
func (w *gwWorld) other6() string { return strings.TrimSuffix(w.down.B6, "::2") + "::3" }

// startHTTP serves httpBody on port 80 of the server, IPv4 and IPv6.
func (w *gwWorld) startHTTP() {
	t := w.t
	var ln net.Listener
	if err := w.srv.Do(func() (err error) { ln, err = net.Listen("tcp", ":80"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { io.WriteString(rw, httpBody) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// startGateway runs seqknock gateway on the router and waits until it
// serves.
func (w *gwWorld) startGateway() {
	t := w.t
	t.Helper()
	before := strings.Count(w.gwLog.String(), "gateway ready")
	// With CAP_NET_ADMIN alone, as seqknock-gateway.service runs it.
	w.gw = w.rtr.Command("setpriv", "--bounding-set=-all,+net_admin", "--inh-caps=-all", "--no-new-privs",
		w.seqknock, "gateway", "--config", w.gwConfig, "--syn-timeout", "1s")
	w.gw.Stderr = w.gwLog
	if err := w.gw.Start(); err != nil {
		t.Fatal(err)
	}
	gw := w.gw
	t.Cleanup(func() {
		if gw.ProcessState == nil {
			gw.Process.Kill()
			gw.Wait()
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(w.gwLog.String(), "gateway ready") <= before {
		if gw.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("gateway not ready:\n%s", w.gwLog)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lanSSH runs plain ssh (no ProxyCommand) from the LAN client.
func (w *gwWorld) lanSSH(host string, command ...string) (string, error) {
	args := append(w.sshArgs("none"), "root@"+host)
	out, err := w.lan.Run("ssh", append(args, command...)...)
	return out, err
}

// lanConnect dials addr:port from the LAN client (from local when set).
func (w *gwWorld) lanConnect(local, addr string, port int, timeout time.Duration) error {
	return w.lan.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		if local != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
		}
		c, err := d.Dial("tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
		if err == nil {
			c.Close()
		}
		return err
	})
}

// wantSilence: the connection got no answer at all (no SYN-ACK, no reset,
// no ICMP error): a timeout.
func wantSilence(t *testing.T, what string, err error) {
	t.Helper()
	var ne net.Error
	if err == nil || errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%s: want a timeout (no answer at all), got %v", what, err)
	}
}

func (w *gwWorld) tables() string {
	out, _ := w.rtr.Run("nft", "list", "tables")
	return out
}

// TestGateway: a LAN client with no seqknock gets in with plain ssh and
// curl, over IPv4 and IPv6, bind_source_port included; the gateway's log
// names the LAN source and the host entry; a source not allowed, an
// unlisted destination and the listener itself get no answer; the table
// is rewritten when removed, and removed when the gateway stops.
func TestGateway(t *testing.T) {
	t.Parallel()
	w := newGWWorld(t, 210)
	w.startGateway()

	t.Run("ssh", func(t *testing.T) {
		out, err := w.lanSSH(w.up.A4, "echo", "through-the-gateway")
		if err != nil || strings.TrimSpace(out) != "through-the-gateway" {
			t.Fatalf("ssh: %v: %s\ngateway:\n%s", err, out, w.gwLog)
		}
		want := fmt.Sprintf("msg=connect src=%s:", w.down.B4)
		if !strings.Contains(w.gwLog.String(), want) || !strings.Contains(w.gwLog.String(), "host=srv") {
			t.Errorf("gateway log lacks %q with host=srv:\n%s", want, w.gwLog)
		}
	})
	t.Run("curl bind_source_port", func(t *testing.T) {
		out, err := w.lan.Run("curl", "-sS", "--max-time", "10", "http://"+w.up.A4+"/")
		if err != nil || out != httpBody {
			t.Fatalf("curl: %v: %q\ngateway:\n%s", err, out, w.gwLog)
		}
	})
	t.Run("curl ipv6", func(t *testing.T) {
		out, err := w.lan.Run("curl", "-sS", "--max-time", "10", "http://["+w.up.A6+"]/")
		if err != nil || out != httpBody {
			t.Fatalf("curl: %v: %q\ngateway:\n%s", err, out, w.gwLog)
		}
	})
	t.Run("ssh ipv6", func(t *testing.T) {
		out, err := w.lanSSH(w.up.A6, "echo", "v6")
		if err != nil || strings.TrimSpace(out) != "v6" {
			t.Fatalf("ssh over IPv6: %v: %s\ngateway:\n%s", err, out, w.gwLog)
		}
	})
	t.Run("source not allowed", func(t *testing.T) {
		wantSilence(t, "from "+w.other4(), w.lanConnect(w.other4(), w.up.A4, 22, 2*time.Second))
		wantSilence(t, "from "+w.other6(), w.lanConnect(w.other6(), w.up.A6, 22, 2*time.Second))
		if strings.Contains(w.gwLog.String(), "src="+w.other4()) || strings.Contains(w.gwLog.String(), "src=["+w.other6()) {
			t.Errorf("the gateway saw the source not allowed:\n%s", w.gwLog)
		}
	})
	t.Run("unlisted destination", func(t *testing.T) {
		// Port 8080 is protected but not a destination: the SYN is
		// forwarded unknocked and dropped by the server.
		wantSilence(t, w.up.A4+":8080", w.lanConnect("", w.up.A4, 8080, 2*time.Second))
		wantSilence(t, "["+w.up.A6+"]:8080", w.lanConnect("", w.up.A6, 8080, 2*time.Second))
		// The listener takes only redirected connections.
		wantSilence(t, "the listener itself", w.lanConnect("", w.down.A4, 7022, 2*time.Second))
		if strings.Contains(w.gwLog.String(), ":8080") {
			t.Errorf("the gateway served an unlisted destination:\n%s", w.gwLog)
		}
	})
	t.Run("stays in force", func(t *testing.T) {
		w.rtr.MustRun("nft", "delete", "table", "inet", "seqknock-gw")
		deadline := time.Now().Add(time.Second)
		for !strings.Contains(w.tables(), "table inet seqknock-gw") {
			if time.Now().After(deadline) {
				t.Fatalf("table not rewritten within 1s:\n%s", w.gwLog)
			}
			time.Sleep(20 * time.Millisecond)
		}
		out, err := w.lanSSH(w.up.A4, "echo", "again")
		if err != nil || strings.TrimSpace(out) != "again" {
			t.Fatalf("ssh after the repair: %v: %s", err, out)
		}
		// A chain emptied: the source not allowed would be let through.
		w.rtr.MustRun("nft", "flush", "chain", "inet", "seqknock-gw", "pre")
		deadline = time.Now().Add(time.Second)
		for {
			out, _ := w.rtr.Run("nft", "list", "chain", "inet", "seqknock-gw", "pre")
			if strings.Contains(out, "drop") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("chain pre not rewritten within 1s:\n%s\n%s", out, w.gwLog)
			}
			time.Sleep(20 * time.Millisecond)
		}
		wantSilence(t, "from "+w.other4()+" after the repair", w.lanConnect(w.other4(), w.up.A4, 22, 2*time.Second))
	})
	t.Run("stop removes the table", func(t *testing.T) {
		w.gw.Process.Signal(syscall.SIGTERM)
		if err := w.gw.Wait(); err != nil {
			t.Fatalf("gateway exit: %v\n%s", err, w.gwLog)
		}
		if strings.Contains(w.tables(), "seqknock-gw") {
			t.Fatalf("table left after SIGTERM:\n%s", w.tables())
		}
		wantSilence(t, "after the gateway stopped", w.lanConnect("", w.up.A4, 22, 2*time.Second))
	})
}

// TestGatewayKilled: the gateway killed mid-session leaves no open path:
// the session ends, and new connections get no answer at all (its table,
// left behind, drops them for want of the gateway's listener), also when
// an unprivileged user of the router listens on the gateway's port.
func TestGatewayKilled(t *testing.T) {
	t.Parallel()
	w := newGWWorld(t, 216)
	mallory := netnstest.NewUser(t)
	w.startGateway()
	w.sshFrom = w.lan
	s := w.openSessionVia("none", w.up.A4)
	w.gw.Process.Kill()
	w.gw.Wait()
	if line, err := s.out.readLine(10 * time.Second); err == nil {
		t.Fatalf("the session outlived the gateway: read %q", line)
	}
	wantSilence(t, "ipv4 after the kill", w.lanConnect("", w.up.A4, 22, 2*time.Second))
	wantSilence(t, "ipv6 after the kill", w.lanConnect("", w.up.A6, 22, 2*time.Second))
	if out, _ := w.srv.Run("ss", "-Htn", "state", "established", "sport = :22"); strings.TrimSpace(out) != "" {
		t.Errorf("connections to sshd remain after the kill:\n%s", out)
	}
	// Mallory takes the gateway's port, to catch the LAN's connections.
	nc := mallory.Command(w.rtr, "nc", "-l", "-k", "7022")
	nc.Stdout, nc.Stderr = &netnstest.Buffer{}, &netnstest.Buffer{}
	if err := nc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Process.Kill(); nc.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := w.rtr.Run("ss", "-Hltn", "sport = :7022")
		if strings.Contains(out, "LISTEN") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nc did not listen: %s", nc.Stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantSilence(t, "with another user's listener on the gateway's port", w.lanConnect("", w.up.A4, 22, 2*time.Second))
}

// TestGatewayUnit: seqknock-gateway.service passes systemd-analyze verify
// with no warning, and grants CAP_NET_ADMIN alone.
func TestGatewayUnit(t *testing.T) {
	netnstest.RequireTools(t, "systemd-analyze")
	root := repoRoot(t)
	bin := netnstest.Build(t, "client/cmd/seqknock")
	b, err := os.ReadFile(root + "/scripts/systemd/seqknock-gateway.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"\nCapabilityBoundingSet=CAP_NET_ADMIN\n", "\nAmbientCapabilities=CAP_NET_ADMIN\n", "\nNoNewPrivileges=yes\n", "\nProtectSystem=strict\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("seqknock-gateway.service lacks %q", strings.TrimSpace(want))
		}
	}
	dir := t.TempDir()
	os.MkdirAll(dir+"/man/man1", 0o755)
	page, err := os.ReadFile(root + "/man/seqknock.1")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/man/man1/seqknock.1", page, 0o644)
	os.WriteFile(dir+"/seqknock-gateway.service", []byte(strings.ReplaceAll(unit, "/usr/local/bin/seqknock", bin)), 0o644)
	verify := exec.Command("systemd-analyze", "verify", "seqknock-gateway.service")
	verify.Dir = dir
	verify.Env = append(os.Environ(), "MANPATH="+dir+"/man", "SYSTEMD_UNIT_PATH="+dir+":")
	out, err := verify.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
