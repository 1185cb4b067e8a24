//go:build linux

package integration

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
	"golang.org/x/sys/unix"
)

var (
	signKey      = []byte("e2e-sign-key-0123456789abcdefghij")
	wrongSignKey = []byte("e2e-wrong-sign-key-0123456789abcd")
)

// signedConfig protects port 22 and signs its connections with tcp-md5.
const signedConfig = `period = "%s"
tolerance = 1
realm = "lab"
[[service]]
port = 22
sign = "tcp-md5"
sign_key_file = "ssh.sign"
[[user]]
name = "alice"
key_file = "alice.key"
`

// writeSignedConfig writes the sign keys and the config that signs port
// 22.
func (w *world) writeSignedConfig() {
	w.t.Helper()
	w.writeKey("ssh.sign", signKey)
	w.writeKey("wrong.sign", wrongSignKey)
	if err := os.WriteFile(w.path("seqknockd.toml"), []byte(fmt.Sprintf(signedConfig, w.period)), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

// restartSSHD stops sshd and starts it again with the same config and
// keys: a new process with new listening sockets.
func (w *world) restartSSHD() {
	t := w.t
	t.Helper()
	w.sshd.Process.Kill()
	w.sshd.Wait()
	sshd, _ := exec.LookPath("sshd")
	w.sshd = w.srv.Command(sshd, "-D", "-e", "-f", w.path("sshd_config"))
	w.sshd.Stderr = &netnstest.Buffer{}
	if err := w.sshd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := w.sshd
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// signedListeners runs `seqknockd status --json` and returns its
// signed_listeners as "address signed" strings, and its exit status.
func (w *world) signedListeners(t *testing.T) ([]string, error) {
	t.Helper()
	out, err := w.srv.Command(w.seqknockd, "--config", w.path("seqknockd.toml"), "status", "--json").Output()
	var st struct {
		Signed []struct {
			Port    int    `json:"port"`
			Mode    string `json:"mode"`
			Address string `json:"address"`
			Signed  bool   `json:"signed"`
		} `json:"signed_listeners"`
	}
	if jerr := json.Unmarshal(out, &st); jerr != nil {
		t.Fatalf("status --json: %v: %s", jerr, out)
	}
	var ls []string
	for _, l := range st.Signed {
		ls = append(ls, fmt.Sprintf("%s %s %v", l.Address, l.Mode, l.Signed))
	}
	return ls, err
}

// TestSignedSSH: with sign = "tcp-md5", seqknockd puts the key on the
// listening sockets of an unpatched sshd; a knocked and signed ssh session
// works in every mode, over IPv4 and IPv6; a knocked but unsigned client,
// and one signing with a wrong key, get no SYN-ACK. When sshd restarts,
// its new listeners are signed within seconds.
func TestSignedSSH(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 230, 2*time.Second)
	w.writeSignedConfig()
	w.startDaemon()
	w.waitLog("msg=\"listener signed\"", 2)
	sign := []string{"--sign-key-file", w.path("ssh.sign")}

	for _, tc := range []struct {
		name   string
		proxy  string
		fdpass bool
		host   string
	}{
		{"proxy", w.proxyCmd("proxy", sign...), false, w.cl.A4},
		{"fdpass", w.proxyCmd("fdpass", sign...), true, w.cl.A4},
		{"ipv6", w.proxyCmd("proxy", append(sign, "-6")...), false, w.cl.A6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := w.sshRun(tc.proxy, tc.fdpass, tc.host, "echo", "signed")
			if err != nil || strings.TrimSpace(out) != "signed" {
				t.Fatalf("ssh: %v: %s", err, out)
			}
		})
	}
	t.Run("exec", func(t *testing.T) {
		args := []string{"exec", "--key-file", w.path("alice.key"), "--realm", "lab", "--period", w.period.String(),
			"--syn-timeout", "1s", "--sign-key-file", w.path("ssh.sign"), w.cl.A4, "22", "--", "sh", "-c", "head -c 8 <&6"}
		cmd := w.cli.Command(w.seqknock, args...)
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+w.path("state"))
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "SSH-2.0-" {
			t.Fatalf("exec: %v: %q", err, out)
		}
	})

	// The four connections above may all have fallen in one period (2 s)
	// and spent its slots: the knocks below start a period afresh.
	time.Sleep(time.Until(totp.NextBoundary(time.Now(), w.period)) + 50*time.Millisecond)
	// The SYN-ACKs sshd sends, seen on the server's side of the link.
	for _, tc := range []struct{ name, proxy string }{
		{"unsigned", w.proxyCmd("proxy")},
		{"wrong key", w.proxyCmd("proxy", "--sign-key-file", w.path("wrong.sign"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCapture(t, w.srv, w.cl.AIf, nil, "tcp src port 22 and tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)")
			admitted := strings.Count(w.daemonLog.String(), "knock admitted")
			out, err := w.sshRun(tc.proxy, false, w.cl.A4, "echo", "should-not-run")
			if err == nil || !strings.Contains(out, "no SYN-ACK") {
				t.Fatalf("ssh: want no SYN-ACK, got %v: %s", err, out)
			}
			if lines := c.stop(); len(lines) != 0 {
				t.Fatalf("sshd answered:\n%s", strings.Join(lines, "\n"))
			}
			// The knocks themselves were good: the firewall admitted
			// them, and the kernel's TCP-MD5 check dropped the SYNs.
			time.Sleep(300 * time.Millisecond)
			if strings.Count(w.daemonLog.String(), "knock admitted") <= admitted {
				t.Errorf("no knock was admitted: the test does not show the signature check\n%s", w.daemonLog)
			}
		})
	}

	ls, err := w.signedListeners(t)
	if err != nil || strings.Join(ls, ",") != "0.0.0.0:22 tcp-md5 true,[::]:22 tcp-md5 true" {
		t.Fatalf("status: %v %v", ls, err)
	}
	text, err := w.srv.Run(w.seqknockd, "--config", w.path("seqknockd.toml"), "status")
	if err != nil || !strings.Contains(text, "listener:       0.0.0.0:22 port 22 signed (tcp-md5)") || strings.Contains(text, base64Key(signKey)) {
		t.Fatalf("status: %v:\n%s", err, text)
	}

	// Each listener is signed once: a signed one is recognised as such.
	if n := strings.Count(w.daemonLog.String(), "msg=\"listener signed\""); n != 2 {
		t.Fatalf("%d \"listener signed\" lines for 2 listeners:\n%s", n, w.daemonLog)
	}

	w.restartSSHD()
	w.waitLog("msg=\"listener signed\"", 4)
	out, err := w.sshRun(w.proxyCmd("proxy", sign...), false, w.cl.A4, "echo", "restarted")
	if err != nil || strings.TrimSpace(out) != "restarted" {
		t.Fatalf("ssh after sshd restarted: %v: %s", err, out)
	}
	if strings.Contains(w.daemonLog.String(), base64Key(signKey)) {
		t.Fatal("the daemon logged the sign key")
	}
}

// TestSignRefusesUserListener: the listener of a port where an unprivileged
// user listens is not touched, whatever the config says: seqknockd logs
// why, status shows it unsigned and exits 3.
func TestSignRefusesUserListener(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 238, 2*time.Second)
	w.writeSignedConfig()
	cfg := strings.Replace(fmt.Sprintf(signedConfig, w.period), "port = 22", "port = 2299", 1)
	os.WriteFile(w.path("seqknockd.toml"), []byte(cfg), 0o600)
	user := w.srv.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-c",
		"import socket,time\ns=socket.socket()\ns.bind(('0.0.0.0',2299))\ns.listen()\nprint('ok',flush=True)\ntime.sleep(60)")
	out, _ := user.StdoutPipe()
	if err := user.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { user.Process.Kill(); user.Wait() })
	buf := make([]byte, 3)
	out.Read(buf)
	w.startDaemon()
	w.waitLog("cannot sign listener", 1)
	if !strings.Contains(w.daemonLog.String(), "not a root service's listener: the socket belongs to uid 65534") {
		t.Errorf("log: %s", w.daemonLog)
	}
	ls, err := w.signedListeners(t)
	var ee *exec.ExitError
	if len(ls) != 1 || ls[0] != "0.0.0.0:2299 tcp-md5 false" || !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("status: %v %v", ls, err)
	}
}

// segments follows one TCP connection through tcpdump's text (-S -n -l):
// the end of the last data segment each way, so an injected segment can
// carry the sequence number the receiver expects next.
type segments struct {
	mu   sync.Mutex
	next map[string]uint32 // "src>dst" → seq after the last data byte
}

var segLine = regexp.MustCompile(`IP6? (\S+) > (\S+): Flags \[[^\]]*\], seq \d+:(\d+),`)

func followSegments(t *testing.T, ns *netnstest.NS, iface string) *segments {
	s := &segments{next: map[string]uint32{}}
	_, out := ns.StartTcpdump(t, "-l", "-n", "-S", "-i", iface, "tcp port 22")
	r := newBufioReader(out)
	go func() {
		for {
			l, err := r.readLine(time.Hour)
			if err != nil {
				return
			}
			if m := segLine.FindStringSubmatch(l); m != nil {
				n, _ := strconv.ParseUint(m[3], 10, 32)
				s.mu.Lock()
				s.next[m[1]+">"+strings.TrimSuffix(m[2], ":")] = uint32(n)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// expect returns what src (tcpdump's "addr.port") sends to dst next.
func (s *segments) expect(src, dst string) (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.next[src+">"+dst]
	return n, ok
}

// clientEnd returns the client's "addr.port" of the connection to srv
// that tcpdump has seen data on both ways.
func (s *segments) clientEnd(srv string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.next {
		src, dst, _ := strings.Cut(k, ">")
		if _, back := s.next[srv+">"+src]; dst == srv && back {
			return src
		}
	}
	return ""
}

// tcpSegment is an IPv4 TCP segment from src to dst with a correct
// checksum and no options.
func tcpSegment(src, dst netip.AddrPort, seq, ack uint32, flags byte, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	p[0], p[8], p[9] = 0x45, 64, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:16], s4[:])
	copy(p[16:20], d4[:])
	binary.BigEndian.PutUint16(p[10:12], checksum(p[:20]))
	tcp := p[20:]
	binary.BigEndian.PutUint16(tcp[0:2], src.Port())
	binary.BigEndian.PutUint16(tcp[2:4], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:8], seq)
	binary.BigEndian.PutUint32(tcp[8:12], ack)
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:16], 502)
	copy(tcp[20:], payload)
	pseudo := make([]byte, 12, 12+len(tcp))
	copy(pseudo[0:4], s4[:])
	copy(pseudo[4:8], d4[:])
	pseudo[9] = unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(pseudo[10:12], uint16(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:18], checksum(append(pseudo, tcp...)))
	return p
}

const (
	tcpFIN = 0x01
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// inject sends, from the router, what an on-path attacker who reads the
// sequence numbers would: with rst, a RST to the server with exactly the
// sequence number it expects next (and, with both, one to the client
// too); else a data segment of garbage at the server's next sequence
// number, acknowledging all the server sent.
func inject(t *testing.T, raw int, seen *segments, srv netip.AddrPort, rst, both bool) {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // the last segments are through
	srvEnd := fmt.Sprintf("%s.%d", srv.Addr(), srv.Port())
	cliEnd := seen.clientEnd(srvEnd)
	i := strings.LastIndex(cliEnd, ".")
	if i < 0 {
		t.Fatalf("no connection to %s seen", srvEnd)
	}
	port, _ := strconv.Atoi(cliEnd[i+1:])
	cli := netip.AddrPortFrom(netip.MustParseAddr(cliEnd[:i]), uint16(port))
	toSrv, ok1 := seen.expect(cliEnd, srvEnd)
	toCli, ok2 := seen.expect(srvEnd, cliEnd)
	if !ok1 || !ok2 {
		seen.mu.Lock()
		defer seen.mu.Unlock()
		t.Fatalf("sequence numbers not seen: %v %v in %v", ok1, ok2, seen.next)
	}
	var pkts [][]byte
	if rst {
		pkts = append(pkts, tcpSegment(cli, srv, toSrv, toCli, tcpRST|tcpACK, nil))
		if both {
			pkts = append(pkts, tcpSegment(srv, cli, toCli, toSrv, tcpRST|tcpACK, nil))
		}
	} else {
		garbage := make([]byte, 64)
		for i := range garbage {
			garbage[i] = byte(i * 7)
		}
		pkts = append(pkts, tcpSegment(cli, srv, toSrv, toCli, tcpPSH|tcpACK, garbage))
	}
	for _, p := range pkts {
		if err := sendRaw(raw, p); err != nil {
			t.Fatalf("inject: %v", err)
		}
	}
}

// alive sends a line through the session and reports whether it came back.
func (s *session) alive(line string) bool {
	fmt.Fprintln(s.in, line)
	got, err := s.out.readLine(5 * time.Second)
	return err == nil && got == "echo:"+line
}

// nstat returns a counter of the namespace's TCP statistics.
func nstat(t *testing.T, ns *netnstest.NS, name string) int {
	t.Helper()
	out, err := ns.Run("nstat", "-asz", name)
	if err != nil {
		t.Fatalf("nstat: %v: %s", err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == name {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// TestSignedSessionResistsInjection: an attacker on the router between
// client and server reads the sequence numbers of an established ssh
// session and injects a RST, or a data segment, with exactly the numbers
// the server expects. Against an unsigned session (the positive control)
// each kills the session; against a signed one the server's kernel drops
// them (TcpExtTCPMD5NotFound counts them) and the session goes on.
func TestSignedSessionResistsInjection(t *testing.T) {
	t.Parallel()
	netnstest.RequireTools(t, "nstat")
	w := newWorld(t, 234, 2*time.Second)
	rtr, rcli, up, down := w.behindRouter("srtr", "srcl", 236, 237, false)
	w.sshFrom = rcli
	srv := netip.AddrPortFrom(netip.MustParseAddr(up.A4), 22)
	raw := rawSender(t, rtr)

	w.startDaemon()
	for _, rst := range []bool{true, false} {
		seen := followSegments(t, rtr, down.AIf)
		s := w.openSessionVia(w.proxyCmd("proxy"), up.A4)
		inject(t, raw, seen, srv, rst, false)
		if s.alive("after-injection") {
			t.Fatalf("unsigned session (positive control) survived the injected %s: the test shows nothing", map[bool]string{true: "RST", false: "data"}[rst])
		}
	}

	w.writeSignedConfig()
	w.daemon.Process.Signal(syscall.SIGHUP)
	w.waitLog("msg=\"listener signed\"", 2)
	seen := followSegments(t, rtr, down.AIf)
	s := w.openSessionVia(w.proxyCmd("proxy", "--sign-key-file", w.path("ssh.sign")), up.A4)
	dropped := nstat(t, w.srv, "TcpExtTCPMD5NotFound")
	inject(t, raw, seen, srv, true, true)
	inject(t, raw, seen, srv, false, false)
	if !s.alive("after-injection") {
		t.Fatalf("signed session died from the injected segments; ssh: %s", s.cmd.Stderr)
	}
	if n := nstat(t, w.srv, "TcpExtTCPMD5NotFound") - dropped; n < 2 {
		t.Errorf("the server's kernel dropped %d unsigned segments, want the 2 injected", n)
	}
	s.check(t, "still-there")
}

// TestSignedNotThroughNAT: TCP-MD5 signs the addresses and ports, so a
// client behind a router that masquerades cannot reach a signed service
// (the README says so): its knock is admitted, its SYN fails the
// signature check at the server (TcpExtTCPMD5Failure), and it gets no
// SYN-ACK. The same client, not signing, reaches the same sshd once the
// service is not signed (TestThroughNAT).
func TestSignedNotThroughNAT(t *testing.T) {
	t.Parallel()
	netnstest.RequireTools(t, "nstat")
	w := newWorld(t, 242, 2*time.Second)
	_, natcli, up, _ := w.behindRouter("snrt", "sncl", 244, 245, true)
	w.writeSignedConfig()
	w.startDaemon()
	w.waitLog("msg=\"listener signed\"", 2)
	w.sshFrom = natcli
	failed := nstat(t, w.srv, "TcpExtTCPMD5Failure")
	out, err := w.sshRun(w.proxyCmd("proxy", "--sign-key-file", w.path("ssh.sign")), false, up.A4, "echo", "via-nat")
	if err == nil || !strings.Contains(out, "no SYN-ACK") {
		t.Fatalf("signed ssh through NAT: want no SYN-ACK, got %v: %s", err, out)
	}
	if n := nstat(t, w.srv, "TcpExtTCPMD5Failure") - failed; n == 0 {
		t.Errorf("no signature failure counted: the SYNs were dropped for another reason\n%s", w.daemonLog)
	}
}
