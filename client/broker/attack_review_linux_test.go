//go:build linux

package broker

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"golang.org/x/sys/unix"
)

// The tests in this file are a second attacker's review of the broker: a
// member of its group (or a user in no group) sends requests no seqknock
// client sends, as a real user in a network namespace, against the broker
// run as the unit runs it (unitBroker) or by hand as root (newBrokerBed:
// the same Serve, in this root process).

// unitBroker starts `seqknock broker` as the unit runs it: a user of its
// own that no caller may signal, CAP_NET_ADMIN alone (ambient, bounding
// set, no_new_privs), in a network namespace of its own, on a socket root
// made for group g. It returns the socket's path.
func unitBroker(t *testing.T, g *netnstest.Group) string {
	t.Helper()
	brokerNS := netnstest.New(t, "rvbroker")
	bin := netnstest.Build(t, "client/cmd/seqknock")
	bu := netnstest.NewUser(t)
	sock, _ := startUnitBroker(t, brokerNS, bin, g, bu)
	return sock
}

// firstLine starts cmd and returns the first line of its output; cmd is
// killed when the test ends.
func firstLine(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	return strings.TrimSpace(line)
}

// TestReviewBrokerPrivilegedSourcePort: a member names a source port
// below 1024 in its request (no knock reserves one: ISN-v1's are
// 1024-65535), then listens on the socket the broker bound. The broker
// must bind no port its caller could not bind itself, whether it runs as
// the unit runs it (no CAP_NET_BIND_SERVICE) or by hand as root.
func TestReviewBrokerPrivilegedSourcePort(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv", "ip", "sh")
	abuse := netnstest.Build(t, "client/broker/testdata/brokerabuse")
	for _, mode := range []string{"unit", "root"} {
		t.Run(mode, func(t *testing.T) {
			ns := netnstest.New(t, "lowport")
			var sock string
			g := netnstest.NewGroup(t)
			if mode == "unit" {
				sock = unitBroker(t, g)
			} else {
				bed := newBrokerBed(t, &Server{})
				sock, g = bed.path, bed.g
			}
			member := netnstest.NewUser(t)
			member.Join(g)
			line := firstLine(t, member.Command(ns, abuse, "lowport", sock, "80"))
			t.Logf("member asking for source port 80: %s", line)
			if strings.HasPrefix(line, "listening on") {
				t.Errorf("a member listens on port 80 through the broker (%s broker): %s", mode, line)
			} else if !strings.HasPrefix(line, "refused:") {
				t.Errorf("want a refusal, got %q", line)
			}
		})
	}
}

// TestReviewBrokerReuseRace: a member's second thread flips SO_REUSEADDR
// and SO_REUSEPORT on (the broker clears both before it binds) and tries
// bind(loopback:PORT) + listen() on the socket it sent, while another
// user's service listens on [::]:PORT (IPv4 and IPv6): over IPv4, IPv6
// and a v4-mapped address, no bind on the service's port lands.
func TestReviewBrokerReuseRace(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv", "ip", "sh")
	ns := netnstest.New(t, "reuse")
	abuse := netnstest.Build(t, "client/broker/testdata/brokerabuse")
	const port = 18081
	victim := netnstest.NewUser(t)
	if line := firstLine(t, victim.Command(ns, abuse, "serve", strconv.Itoa(port))); line != "serving" {
		t.Fatalf("victim: %q", line)
	}
	g := netnstest.NewGroup(t)
	sock := unitBroker(t, g)
	member := netnstest.NewUser(t)
	member.Join(g)
	for _, fam := range []string{"4", "6", "mapped"} {
		out, err := member.Command(ns, abuse, "reuserace", sock, fam, strconv.Itoa(port), "3s").CombinedOutput()
		var tries, ok, binds, listens int
		if _, serr := fmt.Sscanf(string(out), "tries=%d ok=%d binds=%d listens=%d", &tries, &ok, &binds, &listens); err != nil || serr != nil {
			t.Fatalf("%s: %v: %s", fam, err, out)
		}
		t.Logf("%s: %s", fam, strings.TrimSpace(string(out)))
		if ok < 100 {
			t.Errorf("%s: only %d of %d requests answered ok", fam, ok, tries)
		}
		if binds != 0 || listens != 0 {
			t.Errorf("%s: %d binds and %d listens landed on the service's port %d in %d tries", fam, binds, listens, port, tries)
		}
	}
}

// TestReviewBrokerPortExhaustion: a user in no group holds listeners on
// all but 28 of the broker's 28,232 ports (two processes, no privilege);
// while an ordinary connect (the kernel's pick of port) still finds one,
// another member's broker dials must too: requests without a port (the
// broker's pick) and the client's own (Client picks the port).
func TestReviewBrokerPortExhaustion(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv", "ip", "sh")
	ns := netnstest.New(t, "exhaust")
	abuse := netnstest.Build(t, "client/broker/testdata/brokerabuse")
	bed := newBrokerBed(t, &Server{})
	hog, member := netnstest.NewUser(t), netnstest.NewUser(t)
	member.Join(bed.g)
	const free = 28
	total := brokerPortHigh - brokerPortLow + 1
	// Two processes: one user's descriptors are bounded per process.
	for _, n := range []int{total / 2, total - total/2 - free} {
		cmd := hog.Command(ns, abuse, "fill", "-", strconv.Itoa(n))
		stdin, _ := cmd.StdinPipe()
		t.Cleanup(func() { stdin.Close() })
		line := firstLine(t, cmd)
		if !strings.HasPrefix(line, "filled "+strconv.Itoa(n)) {
			t.Fatalf("fill %d: %q", n, line)
		}
	}
	out, err := member.Command(ns, abuse, "dials", bed.path, "200").CombinedOutput()
	t.Logf("another member's broker dials with %d of %d ports free: %s", free, total, strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("dials: %v", err)
	}
	var ok, n int
	fmt.Sscanf(string(out), "ok=%d of %d", &ok, &n)
	// The kernel's own pick still works for an ordinary connect.
	srv := firstLine(t, netnstest.NewUser(t).Command(ns, abuse, "serve", "18082"))
	if srv != "serving" {
		t.Fatalf("serve: %q", srv)
	}
	ordinary := 0
	for range 20 {
		if ns.Command("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/18082").Run() == nil {
			ordinary++
		}
	}
	t.Logf("ordinary connects (kernel's port): %d of 20", ordinary)
	if ordinary != 20 {
		t.Fatalf("ordinary connects: %d of 20: the range is full for everyone, not only the broker", ordinary)
	}
	if ok != n {
		t.Errorf("with %d of %d ports free, %d of %d of another member's broker dials failed (ordinary connects: all 20 made)", free, total, n-ok, n)
	}
	// The same through client.Client, which picks the port itself.
	out, err = member.Command(ns, abuse, "clientdials", bed.path, "200").CombinedOutput()
	t.Logf("the member's client dials: %s", strings.TrimSpace(string(out)))
	if err != nil || !strings.HasPrefix(string(out), "ok=200 of 200") {
		t.Errorf("client dials with %d of %d ports free: %v: %s", free, total, err, out)
	}
}

// TestReviewUserNamespaceSetcapBroker: a user in no group starts the
// cap_net_admin+ep copy as its own broker inside a user namespace of its
// own (unshare -Ur), where its uid is 0, so the refusal of a setcap broker
// (real uid not 0) does not apply, and sends it a socket from outside
// (its uid, mapped to 0 there, is "root" to the broker). The capability
// the copy holds there is the namespace's, not the host's: no socket of
// the host's network namespaces goes into repair mode.
func TestReviewUserNamespaceSetcapBroker(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv", "setcap", "ip", "sh", "unshare")
	ns := netnstest.New(t, "userns")
	abuse := netnstest.Build(t, "client/broker/testdata/brokerabuse")
	capBin := netnstest.SetcapCopy(t, netnstest.Build(t, "client/cmd/seqknock"))
	a := netnstest.NewUser(t)
	sock := filepath.Join(a.Home, "own.sock")
	script := `unshare -Ur "$0" broker --listen "$1" --group 0 2>"$HOME/broker.log" & ` +
		`for i in 1 2 3 4 5 6 7 8 9 10; do [ -S "$1" ] && break; sleep 0.2; done; ` +
		`"$2" dials "$1" 20; kill $!; cat "$HOME/broker.log" >&2`
	out, err := a.Command(ns, "sh", "-c", script, capBin, sock, abuse).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("attacker: %v", err)
	}
	if !strings.Contains(string(out), "broker serving") {
		t.Fatalf("the copy did not serve in the user namespace: the attack was not tried")
	}
	if !strings.Contains(string(out), "ok=0 of 20") {
		t.Errorf("the user's own broker in a user namespace set the ISN of a host socket")
	}
}

// TestReviewBrokerConnectRace: a member's second thread spins connect()
// (to a listener of its own) on the socket it sent, and writes once
// connected, against the broker run as the unit runs it. A connect that
// lands in repair mode makes the socket established without a handshake;
// the broker must never answer "ok" and hand such a socket back. It also
// counts the writes that went out after repair mode was off, before the
// broker disarmed the socket (the residual doc.go names).
func TestReviewBrokerConnectRace(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv", "ip", "sh")
	ns := netnstest.New(t, "connrace")
	abuse := netnstest.Build(t, "client/broker/testdata/brokerabuse")
	g := netnstest.NewGroup(t)
	sock := unitBroker(t, g)
	member := netnstest.NewUser(t)
	member.Join(g)
	out, err := member.Command(ns, abuse, "connrace", sock, "5s").CombinedOutput()
	var tries, ok, inRepair, wroteOff, okEst, accepted int
	if _, serr := fmt.Sscanf(string(out), "tries=%d ok=%d inrepair=%d wroteoff=%d okestablished=%d accepted=%d",
		&tries, &ok, &inRepair, &wroteOff, &okEst, &accepted); err != nil || serr != nil {
		t.Fatalf("connrace: %v: %s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
	if tries < 1000 {
		t.Errorf("only %d tries in 5 s", tries)
	}
	if okEst != 0 {
		t.Errorf("the broker answered ok for %d sockets a connect() in repair mode had established", okEst)
	}
}

// TestReviewBrokerReservedPorts: the administrator of a network namespace
// reserves ports for services (net.ipv4.ip_local_reserved_ports) and sets
// the range of ports the kernel picks from (ip_local_port_range); the
// kernel never picks a reserved port or one outside the range for a
// connection of its own. The broker, in a namespace of its own, can read
// neither: a member's ordinary dial (client.Client, which picks the
// port in its own namespace and names it) must not be bound to a reserved
// port, nor outside the range. (A member naming a port binds only what it
// could bind itself; a request without a port, from a client that does
// not pick, gets the broker's own pick from 32768-60999: still served.)
func TestReviewBrokerReservedPorts(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv", "ip", "sh")
	ns := netnstest.New(t, "reserved")
	abuse := netnstest.Build(t, "client/broker/testdata/brokerabuse")
	const lo, hi = 32768, 46000
	const rangeLo, rangeHi = 40000, 50000
	if out, err := ns.Command("sh", "-c", "echo "+strconv.Itoa(lo)+"-"+strconv.Itoa(hi)+" > /proc/sys/net/ipv4/ip_local_reserved_ports && "+
		"echo "+strconv.Itoa(rangeLo)+" "+strconv.Itoa(rangeHi)+" > /proc/sys/net/ipv4/ip_local_port_range").CombinedOutput(); err != nil {
		t.Fatalf("reserve ports: %v: %s", err, out)
	}
	g := netnstest.NewGroup(t)
	sock := unitBroker(t, g)
	member := netnstest.NewUser(t)
	member.Join(g)
	out, err := member.Command(ns, abuse, "clientdials", sock, "200", strconv.Itoa(lo), strconv.Itoa(hi)).CombinedOutput()
	t.Logf("%d-%d reserved, range %d-%d: %s", lo, hi, rangeLo, rangeHi, strings.TrimSpace(string(out)))
	var ok, n, in, low, high int
	if _, serr := fmt.Sscanf(string(out), "ok=%d of %d in=%d low=%d high=%d", &ok, &n, &in, &low, &high); err != nil || serr != nil {
		t.Fatalf("dials: %v: %s", err, out)
	}
	if ok != n {
		t.Fatalf("%d of %d dials refused", n-ok, n)
	}
	if in != 0 {
		t.Errorf("the broker bound %d of %d dials to ports reserved in the member's namespace", in, n)
	}
	if low < rangeLo || high > rangeHi {
		t.Errorf("dials bound to ports %d-%d, outside the namespace's range %d-%d", low, high, rangeLo, rangeHi)
	}
	// A request without a port: the broker's fallback, which cannot see
	// the namespace's settings, still serves it.
	out, err = member.Command(ns, abuse, "dials", sock, "20").CombinedOutput()
	t.Logf("requests without a port: %s", strings.TrimSpace(string(out)))
	if err != nil || !strings.HasPrefix(string(out), "ok=20 of 20") {
		t.Errorf("requests without a port: %v: %s", err, out)
	}
}

// TestReviewRootBrokerKeepsNetAdmin: `seqknock broker` run by hand as root
// (both builds) gives up every capability but CAP_NET_ADMIN on every
// thread before it serves, so the kernel's own checks apply to the binds
// it makes: in a member's namespace whose ip_unprivileged_port_start is
// 2000, a request for source port 1500 (above the broker's own floor of
// 1024) is refused, as the member's own bind would be; an ordinary
// request is still served, and the socket it made is removed when it
// exits (idle).
func TestReviewRootBrokerKeepsNetAdmin(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv", "ip", "sh")
	abuse := netnstest.Build(t, "client/broker/testdata/brokerabuse")
	ns := netnstest.New(t, "rootbroker")
	if out, err := ns.Command("sh", "-c", "echo 2000 > /proc/sys/net/ipv4/ip_unprivileged_port_start").CombinedOutput(); err != nil {
		t.Fatalf("ip_unprivileged_port_start: %v: %s", err, out)
	}
	g := netnstest.NewGroup(t)
	member := netnstest.NewUser(t)
	member.Join(g)
	for _, build := range builds {
		t.Run(build.name, func(t *testing.T) {
			bin := build.build(t, "client/cmd/seqknock")
			dir, err := os.MkdirTemp("", "seqknock-rootbroker-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			os.Chmod(dir, 0o755)
			sock := filepath.Join(dir, "broker.sock")
			broker := exec.Command(bin, "broker", "--listen", sock, "--group", g.Name, "--exit-idle", "2s")
			log := &netnstest.Buffer{}
			broker.Stderr = log
			if err := broker.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- broker.Wait() }()
			exited := false
			defer func() {
				if !exited {
					broker.Process.Kill()
					<-done
				}
			}()
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), "broker serving"); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("broker did not start: %s", log)
				}
			}
			// Every thread: CAP_NET_ADMIN (bit 12) alone, nothing inheritable.
			tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", broker.Process.Pid))
			if len(tasks) == 0 {
				t.Fatal("no threads found")
			}
			want := map[string]string{"CapInh:": "0000000000000000", "CapPrm:": "0000000000001000", "CapEff:": "0000000000001000", "CapBnd:": "0000000000001000"}
			for _, task := range tasks {
				st, err := os.ReadFile(task)
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range strings.Split(string(st), "\n") {
					f := strings.Fields(l)
					if len(f) == 2 && want[f[0]] != "" && f[1] != want[f[0]] {
						t.Errorf("%s: %s %s, want %s", task, f[0], f[1], want[f[0]])
					}
				}
			}
			line := firstLine(t, member.Command(ns, abuse, "lowport", sock, "1500"))
			t.Logf("source port 1500 with ip_unprivileged_port_start 2000: %s", line)
			if !strings.HasPrefix(line, "refused:") {
				t.Errorf("the root broker bound port 1500 where the member may not: %q", line)
			}
			out, err := member.Command(ns, abuse, "dials", sock, "5").CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "ok=5 of 5") {
				t.Errorf("ordinary requests: %v: %s", err, out)
			}
			select {
			case err := <-done:
				exited = true
				if err != nil {
					t.Errorf("broker: %v: %s", err, log)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("broker did not exit when idle: %s", log)
			}
			if _, err := os.Lstat(sock); err == nil {
				t.Errorf("the socket stays after the broker exited")
			}
		})
	}
}

// TestBrokerClientPicksAgain: a port the client picked that another
// socket takes before the broker binds it is refused as in use, and the
// client picks again (up to pickTries times), never binding a port in
// use; a pick that stays taken fails with EADDRINUSE after pickTries.
func TestBrokerClientPicksAgain(t *testing.T) {
	bed := newBrokerBed(t, &Server{})
	held, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := uint16(held.Addr().(*net.TCPAddr).Port)
	calls := 0
	bc := &Client{Path: bed.path, pick: func(fd int) (uint16, error) {
		calls++
		if calls <= 2 {
			return taken, nil
		}
		return pickPort(fd)
	}}
	fd := tcpSocket(t)
	if err := bc.SetISNFrom(fd, 7, 0); err != nil {
		t.Fatalf("SetISNFrom with two taken picks: %v", err)
	}
	sa, _ := unix.Getsockname(fd)
	if got := sa.(*unix.SockaddrInet4).Port; calls != 3 || got == int(taken) || got == 0 {
		t.Errorf("picks %d (want 3), bound to %d (taken: %d)", calls, got, taken)
	}
	calls = 0
	bc.pick = func(int) (uint16, error) { calls++; return taken, nil }
	err = bc.SetISNFrom(tcpSocket(t), 7, 0)
	if !errors.Is(err, syscall.EADDRINUSE) || calls != pickTries {
		t.Errorf("a pick always taken: %v after %d picks, want EADDRINUSE after %d", err, calls, pickTries)
	}
}
