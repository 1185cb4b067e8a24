//go:build linux

package integration

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
	"golang.org/x/sys/unix"
)

// capture runs tcpdump in ns with filter, printing one line a packet.
type capture struct {
	cmd   *exec.Cmd
	lines *bufioReader
}

func startCapture(t *testing.T, ns *netnstest.NS, iface string, extra []string, filter string) *capture {
	t.Helper()
	args := append([]string{"-l", "-n", "-S", "-i", iface}, extra...)
	cmd, out := ns.StartTcpdump(t, append(args, filter)...)
	return &capture{cmd: cmd, lines: newBufioReader(out)}
}

// stop ends the capture and returns every line it printed.
func (c *capture) stop() []string {
	time.Sleep(300 * time.Millisecond)
	c.cmd.Process.Signal(syscall.SIGINT)
	var lines []string
	for {
		l, err := c.lines.readLine(3 * time.Second)
		if err != nil {
			return lines
		}
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
}

// readPcapIPv4 returns the IPv4 packet of the first record of an Ethernet
// pcap file.
func readPcapIPv4(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 24+16+14+40 {
		t.Fatalf("pcap %s: %v (%d bytes)", path, err, len(b))
	}
	incl := binary.LittleEndian.Uint32(b[24+8:])
	frame := b[24+16 : 24+16+int(incl)]
	if binary.BigEndian.Uint16(frame[12:14]) != 0x0800 {
		t.Fatalf("pcap: not IPv4 over Ethernet")
	}
	return append([]byte(nil), frame[14:]...)
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// rewriteIPv4 returns pkt with a new source address (and, when sport is not
// 0, source port and sequence number), checksums recomputed.
func rewriteIPv4(pkt []byte, src netip.Addr, sport uint16, seq uint32) []byte {
	p := append([]byte(nil), pkt...)
	ihl := int(p[0]&0x0f) * 4
	s4 := src.As4()
	copy(p[12:16], s4[:])
	tcp := p[ihl:]
	if sport != 0 {
		binary.BigEndian.PutUint16(tcp[0:2], sport)
		binary.BigEndian.PutUint32(tcp[4:8], seq)
	}
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:12], checksum(p[:ihl]))
	tcp[16], tcp[17] = 0, 0
	pseudo := make([]byte, 12, 12+len(tcp))
	copy(pseudo[0:8], p[12:20])
	pseudo[9] = unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(pseudo[10:12], uint16(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:18], checksum(append(pseudo, tcp...)))
	return p
}

// synTemplate is an IPv4 TCP SYN to dst:port without source, ports'
// checksums or sequence number; rewriteIPv4 fills them in.
func synTemplate(dst string, port uint16) []byte {
	tmpl := make([]byte, 40)
	tmpl[0], tmpl[8], tmpl[9] = 0x45, 64, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(tmpl[2:4], 40)
	d := netip.MustParseAddr(dst).As4()
	copy(tmpl[16:20], d[:])
	binary.BigEndian.PutUint16(tmpl[22:24], port)
	tmpl[32] = 5 << 4 // data offset
	tmpl[33] = 0x02   // SYN
	binary.BigEndian.PutUint16(tmpl[34:36], 64240)
	return tmpl
}

// rawSender is a raw IPv4 socket in ns.
func rawSender(t *testing.T, ns *netnstest.NS) int {
	t.Helper()
	var fd int
	if err := ns.Do(func() (err error) { fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func sendRaw(fd int, pkt []byte) error {
	var dst unix.SockaddrInet4
	copy(dst.Addr[:], pkt[16:20])
	return unix.Sendto(fd, pkt, 0, &dst)
}

func (w *world) status(t *testing.T) map[string]any {
	t.Helper()
	// The daemon locks the service's listeners a moment after its sync:
	// until then status says so and exits 3.
	out, err := w.srv.Run(w.seqknockd, "--config", w.path("seqknockd.toml"), "status", "--json")
	for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		out, err = w.srv.Run(w.seqknockd, "--config", w.path("seqknockd.toml"), "status", "--json")
	}
	if err != nil {
		t.Fatalf("status: %v: %s", err, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("status json: %v: %s", err, out)
	}
	return m
}

func packets(m map[string]any, key string) int {
	return int(m[key].(map[string]any)["packets"].(float64))
}

// Scenario 4: the admitted SYN, captured and resent from the attacker with
// its own address and with the client's address spoofed, never gets a
// SYN-ACK.
func TestReplayCapturedSYN(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 120, 10*time.Second)
	w.startDaemon()
	// The attacker reaches the client link's subnet through the server.
	w.atk.MustRun("ip", "route", "add", w.cl.Subnet4, "via", w.al.A4)
	pcap := w.path("syn.pcap")
	dump, _ := w.srv.StartTcpdump(t, "-n", "-i", w.cl.AIf, "-c", "1", "-w", pcap,
		"tcp dst port 22 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn")
	if out, err := w.sshRun(w.proxyCmd("proxy"), false, w.cl.A4, "true"); err != nil {
		t.Fatalf("legitimate ssh: %v: %s", err, out)
	}
	dump.Wait()
	syn := readPcapIPv4(t, pcap)
	before := w.status(t)

	c := startCapture(t, w.srv, "any", nil, "tcp port 22 and tcp[tcpflags] & tcp-syn != 0")
	fd := rawSender(t, w.atk)
	own := rewriteIPv4(syn, netip.MustParseAddr(w.al.B4), 0, 0)
	spoofed := rewriteIPv4(syn, netip.MustParseAddr(w.cl.B4), 0, 0)
	for _, p := range [][]byte{own, spoofed} {
		if err := sendRaw(fd, p); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	lines := c.stop()
	var syns, synacks int
	for _, l := range lines {
		switch {
		case strings.Contains(l, "Flags [S.]"):
			synacks++
		case strings.Contains(l, "Flags [S]"):
			syns++
		}
	}
	if syns < 2 {
		t.Fatalf("the replays did not reach the server (%d SYNs seen):\n%s", syns, strings.Join(lines, "\n"))
	}
	if synacks != 0 {
		t.Fatalf("the server answered a replay:\n%s", strings.Join(lines, "\n"))
	}
	after := w.status(t)
	if d := packets(after, "dropped") - packets(before, "dropped"); d < 2 {
		t.Errorf("drop counter rose by %d, want at least 2", d)
	}
	if packets(after, "admitted") != packets(before, "admitted") {
		t.Error("a replay was admitted")
	}
}

// Scenario 5: 100,000 SYNs with random sequence numbers from the attacker:
// none admitted; a legitimate ssh during the flood succeeds.
func TestBruteForceSample(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 122, 10*time.Second)
	w.startDaemon()
	// The valid knocks of the window are left out of the sample, so the
	// test cannot pass or fail by a 1 in 350,000 chance.
	valid := map[uint32]bool{}
	d, _ := totp.NewDeriver(aliceKey, "lab")
	now := time.Now()
	for c := totp.Counter(now, w.period) - 2; c <= totp.Counter(now, w.period)+4; c++ {
		for s := uint8(0); s < 4; s++ {
			valid[d.ISN(22, c, s)] = true
		}
	}
	tmpl := synTemplate(w.al.A4, 22)
	src := netip.MustParseAddr(w.al.B4)

	c := startCapture(t, w.srv, w.al.AIf, nil, "tcp src port 22 and tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)")
	before := w.status(t)
	fd := rawSender(t, w.atk)
	const n = 100000
	rng := rand.New(rand.NewPCG(1, 2))
	sent := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			seq := rng.Uint32()
			for valid[seq] || seq == 0 {
				seq = rng.Uint32()
			}
			p := rewriteIPv4(tmpl, src, uint16(1024+rng.IntN(64000)), seq)
			if err := sendRaw(fd, p); err != nil {
				sent <- fmt.Errorf("packet %d: %w", i, err)
				return
			}
			if i%2000 == 0 {
				time.Sleep(20 * time.Millisecond) // spread the flood over the ssh below
			}
		}
		sent <- nil
	}()
	out, err := w.sshRun(w.proxyCmd("proxy", "--syn-timeout", "3s"), false, w.cl.A4, "echo", "during-flood")
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err != nil || strings.TrimSpace(out) != "during-flood" {
		t.Fatalf("legitimate ssh during the flood: %v: %s", err, out)
	}
	if lines := c.stop(); len(lines) != 0 {
		t.Fatalf("the server answered the flood %d times: %q", len(lines), lines[:min(5, len(lines))])
	}
	after := w.status(t)
	if adm := packets(after, "admitted") - packets(before, "admitted"); adm != 1 {
		t.Errorf("admitted rose by %d, want 1 (the legitimate ssh)", adm)
	}
	// One source's flood is mostly dropped by the guess limit, before
	// any lookup; the rest by the drop rules.
	dr := packets(after, "dropped") - packets(before, "dropped")
	lo := packets(after, "lockout_dropped") - packets(before, "lockout_dropped")
	if dr+lo < n || lo == 0 {
		t.Errorf("dropped rose by %d and lockout drops by %d, want %d in all and a lockout: the flood did not reach the rules", dr, lo, n)
	}
}

// Scenario 10: the client behind a router that masquerades with random
// source ports; Linux NAT keeps the ISN, so ssh through the knock works.
func TestThroughNAT(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 124, 2*time.Second)
	_, natcli, up, _ := w.behindRouter("ertr", "encl", 126, 127, true)
	w.startDaemon()
	w.sshFrom = natcli
	c := startCapture(t, w.srv, up.AIf, nil, "tcp dst port 22 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn")
	out, err := w.sshRun(w.proxyCmd("proxy"), false, up.A4, "echo", "via-nat")
	if err != nil || strings.TrimSpace(out) != "via-nat" {
		t.Fatalf("ssh through NAT: %v: %s", err, out)
	}
	lines := c.stop()
	if len(lines) == 0 || !strings.Contains(lines[0], up.B4+".") {
		t.Fatalf("the SYN did not arrive from the router's address:\n%s", strings.Join(lines, "\n"))
	}
}
