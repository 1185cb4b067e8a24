//go:build linux

package broker

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/seqknock/seqknock/internal/netnstest"
	"golang.org/x/sys/unix"
)

// The tests in this file play a local user who tries to take another
// user's port through a socket in repair mode: the kernel lets such a
// socket bind and listen on a port another service already listens on
// (127.0.0.1:PORT beside a service on 0.0.0.0:PORT), and new connections
// to that address then reach it.

// TestBrokerWindowHoldsPort: a socket sent to the broker and frozen in
// its repair window (the broker's apply waits there) cannot be bound to
// the port of a listening service, neither directly nor after a connect
// (no handshake in repair mode) and a disconnect, which gives back a port
// the kernel picked; a listen() in the window listens on the socket's own
// port, so every connection to the service still reaches it; and the
// broker refuses the request and hands the socket back neither listening
// nor in repair mode.
func TestBrokerWindowHoldsPort(t *testing.T) {
	frozen, release := make(chan struct{}), make(chan struct{})
	bed := newBrokerBed(t, &Server{ReadTimeout: 10 * time.Second, apply: func(fd int, isn uint32) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
			return err
		}
		frozen <- struct{}{}
		<-release
		return applyInRepair(fd, isn)
	}})
	victim, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	vport := victim.Addr().(*net.TCPAddr).Port
	accepted := make(chan struct{}, 100)
	go func() {
		for {
			c, err := victim.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()

	target := &unix.SockaddrInet4{Port: vport, Addr: [4]byte{127, 0, 0, 1}}
	// Each socket is sent to the broker and worked on while the broker is
	// frozen in its window; the broker's answer comes after.
	window := func(do func(fd, own int)) (fd int, answer error) {
		t.Helper()
		fd = tcpSocket(t)
		answered := make(chan error, 1)
		go func() { answered <- (&Client{Path: bed.path}).SetISNFrom(fd, 0x01020304, 0) }()
		select {
		case <-frozen:
		case err := <-answered:
			t.Fatalf("the broker answered before its repair window: %v", err)
		}
		if v, _ := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR); v != 1 {
			t.Error("the socket is not in repair mode in the window")
		}
		own := localPort(t, fd)
		if own == 0 {
			t.Error("the socket in the repair window is not bound")
		}
		do(fd, own)
		release <- struct{}{}
		return fd, <-answered
	}
	notRepair := func(fd int) {
		t.Helper()
		if v, _ := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR); v != 0 {
			t.Error("the socket was handed back in repair mode")
		}
	}

	fd, _ := window(func(fd, own int) {
		if err := unix.Bind(fd, target); err == nil {
			t.Errorf("in the repair window, bind(127.0.0.1:%d) beside the service's 0.0.0.0:%d succeeded", vport, vport)
			return
		}
		// connect() in repair mode: established at once, no packet.
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Errorf("connect in repair mode: %v", err)
		}
		sa := unix.RawSockaddr{Family: unix.AF_UNSPEC}
		if _, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)); e != 0 {
			t.Errorf("disconnect: %v", e)
		}
		if p := localPort(t, fd); p != own {
			t.Errorf("after a connect and a disconnect in the window the socket's port is %d, want %d", p, own)
		}
		if err := unix.Bind(fd, target); err == nil {
			t.Errorf("in the repair window, after a disconnect, bind(127.0.0.1:%d) succeeded", vport)
		}
	})
	notRepair(fd)

	fd, err = window(func(fd, own int) {
		// listen() in repair mode skips the conflict check, but only on
		// the socket's own port, bound before repair mode.
		if err := unix.Listen(fd, 16); err != nil {
			t.Errorf("listen in the window: %v", err)
		}
		if p := localPort(t, fd); p != own {
			t.Errorf("listen() in the window listens on port %d, want the socket's own %d", p, own)
		}
		for i := range 10 {
			c, err := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(vport)), 2*time.Second)
			if err != nil {
				t.Errorf("connection %d to the service: %v", i, err)
				continue
			}
			c.Close()
		}
	})
	if err == nil {
		t.Error("the broker answered ok for a socket that listened in its window")
	}
	n := 0
	for timeout := time.After(5 * time.Second); n < 10; n++ {
		select {
		case <-accepted:
			continue
		case <-timeout:
		}
		break
	}
	if n != 10 {
		t.Errorf("the service accepted %d of 10 connections", n)
	}
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.State != tcpClose {
		t.Errorf("after the broker's answer the socket's state is %v (%v), want closed", info, err)
	}
	notRepair(fd)
}

func localPort(t *testing.T, fd int) int {
	t.Helper()
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*unix.SockaddrInet4).Port
}

// victimService runs `repairattack serve port` as a user of its own in ns:
// another user's service on 0.0.0.0:port.
func victimService(t *testing.T, ns *netnstest.NS, attack string, port int) {
	t.Helper()
	v := netnstest.NewUser(t)
	cmd := v.Command(ns, attack, "serve", strconv.Itoa(port))
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "serving\n" {
		t.Fatalf("victim service: %q", line)
	}
}

// countVictim dials 127.0.0.1:port in ns for d (at least 10 times) and
// returns how many connections reached the victim, something else, or
// nothing.
func countVictim(t *testing.T, ns *netnstest.NS, attack string, port int, d time.Duration) (victim, other, lost int) {
	t.Helper()
	out, err := ns.Command(attack, "count", "127.0.0.1:"+strconv.Itoa(port), d.String()).CombinedOutput()
	if _, serr := fmt.Sscanf(string(out), "victim=%d other=%d lost=%d", &victim, &other, &lost); err != nil || serr != nil {
		t.Fatalf("count: %v: %s", err, out)
	}
	return victim, other, lost
}

// TestSetcapBrokerAttack: a user in no group starts their own broker from
// a cap_net_admin+ep copy of seqknock, sends it their socket, stops it
// (SIGSTOP) inside its repair window, kills it and keeps the socket in
// repair mode to bind and listen on 127.0.0.1:PORT, where another user's
// service listens on 0.0.0.0:PORT. The broker refuses to run from the
// copy, so the attacker holds no socket in repair mode, and all 10 of the
// service's connections reach it.
func TestSetcapBrokerAttack(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv", "setcap", "ip")
	ns := netnstest.New(t, "hijack")
	attack := netnstest.Build(t, "client/testdata/repairattack")
	capBin := netnstest.SetcapCopy(t, netnstest.Build(t, "client/cmd/seqknock"))
	const port = 18080
	victimService(t, ns, attack, port)

	a := netnstest.NewUser(t)
	cmd := a.Command(ns, attack, "setcap", capBin, strconv.Itoa(port), "200")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// The attacker's verdict; a hijacker keeps its socket (and runs) while
	// the victim's connections are counted.
	line, _ := bufio.NewReader(out).ReadString('\n')
	t.Logf("attacker: %s", strings.TrimSpace(line))
	if strings.HasPrefix(line, "hijacked") {
		t.Errorf("the attacker holds 127.0.0.1:%d: %s", port, line)
	} else if !strings.Contains(line, "refused with a file capability") {
		t.Errorf("the broker from the setcap copy was not refused: %q", line)
	}
	victim, other, lost := countVictim(t, ns, attack, port, 0)
	if victim != 10 || other != 0 || lost != 0 {
		t.Errorf("the victim's client: %d of 10 connections reached the service (%d another socket, %d lost)", victim, other, lost)
	}
}

// TestBrokerRaceBindListen: a member of the broker's group races
// bind(127.0.0.1:PORT) + listen() on the socket it sent against the
// broker, run as the system service runs it (a user of its own that the
// member cannot signal, CAP_NET_ADMIN alone and in its ambient set, in a
// network namespace of its own, on a socket root made), where another
// user's service listens on 0.0.0.0:PORT: for at least 10 s and 10,000
// requests answered "ok", no bind lands, no listen on the port lands, and
// the service's own client, dialing all along, loses no connection.
func TestBrokerRaceBindListen(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv", "ip", "sh")
	ns, brokerNS := netnstest.New(t, "race"), netnstest.New(t, "rbroker")
	attack := netnstest.Build(t, "client/testdata/repairattack")
	bin := netnstest.Build(t, "client/cmd/seqknock")
	const port = 18080
	victimService(t, ns, attack, port)

	g := netnstest.NewGroup(t)
	bu, member := netnstest.NewUser(t), netnstest.NewUser(t)
	member.Join(g)
	sock, broker := startUnitBroker(t, brokerNS, bin, g, bu)
	// The member cannot signal the broker.
	if out, err := member.Command(nil, "kill", "-STOP", strconv.Itoa(broker.Process.Pid)).CombinedOutput(); err == nil {
		t.Fatalf("the member stopped the broker: %s", out)
	}

	type counts struct{ victim, other, lost int }
	counted := make(chan counts, 1)
	go func() {
		var c counts
		c.victim, c.other, c.lost = countVictim(t, ns, attack, port, 12*time.Second)
		counted <- c
	}()
	race := member.Command(ns, attack, "race", sock, strconv.Itoa(port), "10s")
	var stderr strings.Builder
	race.Stderr = &stderr
	out, err := race.Output()
	c := <-counted
	if err != nil {
		t.Fatalf("race: %v: %s%s", err, out, stderr.String())
	}
	t.Logf("race: %s; victim's client: %d reached, %d elsewhere, %d lost", strings.TrimSpace(string(out)), c.victim, c.other, c.lost)
	var tries, ok, binds, listens int
	var secs float64
	if _, err := fmt.Sscanf(string(out), "tries=%d ok=%d binds=%d listens=%d seconds=%g", &tries, &ok, &binds, &listens, &secs); err != nil {
		t.Fatalf("race output %q: %v", out, err)
	}
	if secs < 10 || ok < 10000 {
		t.Errorf("the race ran %.1f s with %d requests answered ok: want at least 10 s and 10,000", secs, ok)
	}
	if binds != 0 || listens != 0 {
		t.Errorf("%d binds and %d listens landed on 127.0.0.1:%d in %d tries", binds, listens, port, tries)
	}
	if c.other != 0 || c.lost != 0 || c.victim < 10 {
		t.Errorf("the victim's client: %d connections reached the service, %d another socket, %d lost", c.victim, c.other, c.lost)
	}
}

// TestBrokerSourcePort: the broker binds the socket it is sent, before
// the ISN, to the source port the request names (IPv4 and IPv6), or to
// one of its own choosing from its range; a socket bound to an address
// alone (IP_BIND_ADDRESS_NO_PORT) keeps it; a port in use is an error that
// wraps EADDRINUSE, and leaves the socket unbound.
func TestBrokerSourcePort(t *testing.T) {
	bed := newBrokerBed(t, &Server{})
	c := &Client{Path: bed.path}
	busy, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	// A port free for IPv4 and IPv6 alike (a dual-stack listener's): the
	// broker binds an IPv6 socket dual-stack.
	free := func(network string) int {
		ln, err := net.Listen(network, ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	bound := func(fd int) (string, int) {
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatal(err)
		}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			return netip.AddrFrom4(a.Addr).String(), a.Port
		case *unix.SockaddrInet6:
			return netip.AddrFrom16(a.Addr).String(), a.Port
		}
		return "", 0
	}
	for _, tc := range []struct {
		name     string
		family   int
		sport    int
		noPort   bool // bound to 127.0.0.1 with IP_BIND_ADDRESS_NO_PORT first
		wantAddr string
	}{
		{"IPv4, the port named", unix.AF_INET, free("tcp"), false, "0.0.0.0"},
		{"IPv6, the port named", unix.AF_INET6, free("tcp"), false, "::"},
		{"IPv4, the broker's choice", unix.AF_INET, 0, false, "0.0.0.0"},
		{"IPv6, the broker's choice", unix.AF_INET6, 0, false, "::"},
		{"an address without a port", unix.AF_INET, 0, true, "127.0.0.1"},
	} {
		fd, err := unix.Socket(tc.family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if tc.noPort {
			unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.SetISNFrom(fd, 0xabcdef01, uint16(tc.sport)); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		addr, port := bound(fd)
		if addr != tc.wantAddr || tc.sport != 0 && port != tc.sport || tc.sport == 0 && (port < brokerPortLow || port > brokerPortHigh) {
			t.Errorf("%s: bound to %s port %d, want %s port %d (0: from %d-%d)", tc.name, addr, port, tc.wantAddr, tc.sport, brokerPortLow, brokerPortHigh)
		}
		if got := sendSeq(t, fd); got != 0xabcdef01 {
			t.Errorf("%s: ISN %#x", tc.name, got)
		}
	}
	fd := tcpSocket(t)
	err = c.SetISNFrom(fd, 1, uint16(busyPort))
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "source port in use: "+strconv.Itoa(busyPort)) {
		t.Errorf("a port in use: %v, want EADDRINUSE", err)
	}
	if _, port := bound(fd); port != 0 {
		t.Errorf("a port in use: the socket was bound to port %d", port)
	}
}

// startUnitBroker starts the broker as its unit runs it: socket-activated with
// a socket of group g in a fresh directory everyone may enter, as user bu
// with CAP_NET_ADMIN alone (ambient and bounding), no_new_privs, in ns.
// It returns the socket's path and the broker's process, once it serves.
func startUnitBroker(t *testing.T, ns *netnstest.NS, bin string, g *netnstest.Group, bu *netnstest.User) (sock string, broker *exec.Cmd) {
	t.Helper()
	dir, err := os.MkdirTemp("", "seqknock-unitbroker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	sock = filepath.Join(dir, "broker.sock")
	ln, err := Listen(sock, g.GID)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := ln.File()
	ln.Close()
	broker = ns.Command("setpriv", "--reuid="+strconv.Itoa(bu.UID), "--regid="+strconv.Itoa(bu.GID), "--clear-groups",
		"--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin", "--no-new-privs",
		"sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" broker --group "$1"`, bin, g.Name)
	broker.ExtraFiles = []*os.File{f}
	brokerLog := &netnstest.Buffer{}
	broker.Stderr = brokerLog
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { broker.Process.Kill(); broker.Wait() })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(brokerLog.String(), "broker serving"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("broker did not start: %s", brokerLog)
		}
	}
	return sock, broker
}
