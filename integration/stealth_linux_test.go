//go:build linux

package integration

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// Ports the stealth tests compare the protected port with: one where
// nothing listens and nothing filters, one a firewall drops.
const (
	unusedPort  = 2200
	droppedPort = 2201
)

// stealthWorld is a world whose port 22 is in mode (drop or reset), with
// a drop rule for droppedPort in another table of the server, as a host
// firewall would have.
func stealthWorld(t *testing.T, subnet int, mode string) *world {
	w := newWorld(t, subnet, 10*time.Second)
	cfg := fmt.Sprintf("period = %q\ntolerance = 1\nrealm = \"lab\"\n[[service]]\nport = 22\nunknocked = %q\n[[user]]\nname = \"alice\"\nkey_file = \"alice.key\"\n", w.period, mode)
	if err := os.WriteFile(w.path("seqknockd.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	fw := w.srv.Command("nft", "-f", "-")
	fw.Stdin = strings.NewReader(fmt.Sprintf("table inet hostfw {\n chain in {\n  type filter hook input priority 0; policy accept;\n  tcp dport %d drop\n }\n}\n", droppedPort))
	if out, err := fw.CombinedOutput(); err != nil {
		t.Fatalf("host firewall: %v: %s", err, out)
	}
	w.startDaemon()
	return w
}

var nmapPort = regexp.MustCompile(`(\d+)/([a-z|]+)/tcp/`)

// nmapStates scans ports of addr from ns with nmap's scan type flag and
// returns each port's state ("closed", "filtered", "open|filtered", ...).
func nmapStates(t *testing.T, ns *netnstest.NS, scan, addr string, ports ...int) map[int]string {
	t.Helper()
	return nmapStatesRetries(t, ns, scan, 1, addr, ports...)
}

// nmapStatesRetries is nmapStates with nmap's --max-retries.
func nmapStatesRetries(t *testing.T, ns *netnstest.NS, scan string, retries int, addr string, ports ...int) map[int]string {
	t.Helper()
	ps := make([]string, len(ports))
	for i, p := range ports {
		ps[i] = fmt.Sprint(p)
	}
	args := []string{"-n", "-Pn", "-T4", "--max-retries", fmt.Sprint(retries), "--host-timeout", "60s", scan, "-p", strings.Join(ps, ","), "-oG", "-", addr}
	if strings.Contains(addr, ":") {
		args = append([]string{"-6"}, args...)
	}
	out, err := ns.Run("nmap", args...)
	if err != nil {
		t.Fatalf("nmap %s: %v: %s", scan, err, out)
	}
	got := map[int]string{}
	for _, m := range nmapPort.FindAllStringSubmatch(out, -1) {
		var p int
		fmt.Sscan(m[1], &p)
		got[p] = m[2]
	}
	// nmap leaves out of the port list the ports in its "Ignored State"
	// when there are many; with a handful it lists every one.
	for _, p := range ports {
		if got[p] == "" {
			t.Fatalf("nmap %s did not report port %d:\n%s", scan, p, out)
		}
	}
	return got
}

// TestClosedPortMimicry scans the protected port with nmap from the
// attacker namespace, over IPv4 and IPv6, with each scan type, in each
// mode: in reset mode it
// must look exactly like the unused port (closed, unfiltered for -sA),
// in drop mode exactly like the port the host firewall drops. A knocked
// client still gets in, in both modes.
func TestClosedPortMimicry(t *testing.T) {
	netnstest.RequireRoot(t, "nmap")
	for _, c := range []struct {
		mode   string
		subnet int
		like   int
	}{{"reset", 180, unusedPort}, {"drop", 182, droppedPort}} {
		t.Run(c.mode, func(t *testing.T) {
			t.Parallel()
			w := stealthWorld(t, c.subnet, c.mode)
			for _, addr := range []string{w.al.A4, w.al.A6} {
				for _, scan := range []string{"-sS", "-sA", "-sF", "-sN", "-sX", "-sV"} {
					got := nmapStates(t, w.atk, scan, addr, 22, c.like)
					t.Logf("nmap %s %s: 22 %s, %d %s", scan, addr, got[22], c.like, got[c.like])
					if got[22] != got[c.like] {
						t.Errorf("nmap %s %s: port 22 is %s, port %d is %s: the protected port stands out", scan, addr, got[22], c.like, got[c.like])
					}
					if c.mode == "reset" && strings.Contains(got[22], "filtered") && scan != "-sA" {
						t.Errorf("nmap %s %s: port 22 is %s in reset mode", scan, addr, got[22])
					}
				}
			}
			// A burst over the guess limit locks the scanner's source out
			// (for a second); scanned at once, without retries that could
			// outlast the lockout, the port still looks the same.
			fd := rawSender(t, w.atk)
			tmpl := synTemplate(w.al.A4, 22)
			for _, scan := range []string{"-sS", "-sA", "-sF", "-sV"} {
				for i := 0; i < 60; i++ {
					if err := sendRaw(fd, rewriteIPv4(tmpl, netip.MustParseAddr(w.al.B4), uint16(3000+i), uint32(i)*7919+1)); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Millisecond)
				}
				got := nmapStatesRetries(t, w.atk, scan, 0, w.al.A4, 22, c.like)
				t.Logf("locked out, nmap %s: 22 %s, %d %s", scan, got[22], c.like, got[c.like])
				if got[22] != got[c.like] {
					t.Errorf("locked out, nmap %s: port 22 is %s, port %d is %s: the protected port stands out", scan, got[22], c.like, got[c.like])
				}
			}
			out, err := w.sshRun(w.proxyCmd("proxy"), false, w.cl.A4, "echo", "knocked-"+c.mode)
			if err != nil || strings.TrimSpace(out) != "knocked-"+c.mode {
				t.Fatalf("knocked ssh in %s mode: %v: %s", c.mode, err, out)
			}
		})
	}
}

// normalizeReset blanks in a reset's tcpdump -v lines what differs
// between two ports' replies by nature: time, ports, sequence and
// acknowledgment numbers, checksum values (not whether they are correct).
var (
	rePortNum = regexp.MustCompile(`\.(\d+) >`)
	rePortEnd = regexp.MustCompile(`\.(\d+): Flags`)
	reNumbers = regexp.MustCompile(`(seq|ack|cksum) [0-9a-fx]+`)
	reFlow    = regexp.MustCompile(`flowlabel 0x[0-9a-f]+, `)
)

func normalizeReset(l string) string {
	_, l, _ = strings.Cut(l, " ") // the time
	l = rePortNum.ReplaceAllString(l, ".PORT >")
	l = rePortEnd.ReplaceAllString(l, ".PORT: Flags")
	l = reNumbers.ReplaceAllString(l, "$1 N")
	// The kernel's own IPv6 reset carries an automatic flow label (a hash
	// of the flow, net.ipv6.auto_flowlabels); nftables' reject sends
	// label 0. Known and documented; the rest must match.
	l = reFlow.ReplaceAllString(l, "")
	return l
}

// TestResetLikeKernel sends a SYN, an ACK, a FIN, a NULL and an XMAS
// packet (and over IPv6 a SYN and an ACK) from the attacker to
// the protected port in reset mode and to the unused port, and compares
// the replies tcpdump sees (flags, TTL, IP flags, window, options, length):
// they must be the same packets but for ports and numbers; over IPv6 too,
// but for the flow label (see normalizeReset).
//
// The server's veth computes checksums in software, as a real NIC does in
// hardware: with offload on, veth hands the reject's packet (checksum left
// to the device) to the attacker's namespace without one, and tcpdump
// there calls it incorrect, which no wire would show.
func TestResetLikeKernel(t *testing.T) {
	netnstest.RequireRoot(t, "nmap", "ethtool")
	w := stealthWorld(t, 184, "reset")
	w.srv.MustRun("ethtool", "-K", w.al.AIf, "tx", "off")
	for _, scan := range []struct{ name, flag, addr, filter string }{
		{"SYN", "-sS", w.al.A4, "tcp src port %d and tcp[tcpflags] & tcp-rst != 0"},
		{"ACK", "-sA", w.al.A4, "tcp src port %d and tcp[tcpflags] & tcp-rst != 0"},
		{"FIN", "-sF", w.al.A4, "tcp src port %d and tcp[tcpflags] & tcp-rst != 0"},
		{"NULL", "-sN", w.al.A4, "tcp src port %d and tcp[tcpflags] & tcp-rst != 0"},
		{"XMAS", "-sX", w.al.A4, "tcp src port %d and tcp[tcpflags] & tcp-rst != 0"},
		// tcpdump's tcp[] reads IPv4 headers only: every IPv6 packet
		// from the port, the resets picked out below.
		{"SYN over IPv6", "-sS", w.al.A6, "ip6 and tcp src port %d"},
		{"ACK over IPv6", "-sA", w.al.A6, "ip6 and tcp src port %d"},
	} {
		replies := map[int]string{}
		for _, port := range []int{22, unusedPort} {
			c := startCapture(t, w.atk, w.al.BIf, []string{"-v"}, fmt.Sprintf(scan.filter, port))
			nmapStates(t, w.atk, scan.flag, scan.addr, port)
			lines := c.stop()
			var rst []string
			for i, l := range lines {
				switch {
				case !strings.Contains(l, "Flags [R"):
				case strings.Contains(l, " IP6 ("):
					rst = append(rst, l) // one line over IPv6
				case i > 0:
					// Over IPv4, tcpdump -v writes the IP header's line,
					// then the TCP line.
					rst = append(rst, lines[i-1]+" "+strings.TrimSpace(l))
				}
			}
			if len(rst) == 0 {
				t.Fatalf("%s to %d: no reset seen:\n%s", scan.name, port, strings.Join(lines, "\n"))
			}
			// The first reset stands for them all.
			replies[port] = normalizeReset(rst[0])
		}
		t.Logf("%s: %s", scan.name, replies[22])
		if replies[22] != replies[unusedPort] {
			t.Errorf("%s: the protected port's reset differs from the kernel's:\n  22:   %s\n  %d: %s", scan.name, replies[22], unusedPort, replies[unusedPort])
		}
	}
}
