//go:build linux

package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/seqknock/seqknock/internal/netnstest"
	"golang.org/x/sys/unix"
)

// brokerBed is a broker serving in this process on a socket in a fresh
// directory, for group g.
type brokerBed struct {
	path string
	b    *Server
	g    *netnstest.Group
}

func newBrokerBed(t testing.TB, b *Server) *brokerBed {
	t.Helper()
	netnstest.RequireRoot(t)
	g := netnstest.NewGroup(t)
	dir, err := os.MkdirTemp("", "seqknock-broker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bed := &brokerBed{path: filepath.Join(dir, "broker.sock"), b: b, g: g}
	ln, err := Listen(bed.path, g.GID)
	if err != nil {
		t.Fatal(err)
	}
	b.GID, b.GroupName = g.GID, g.Name
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return bed
}

func tcpSocket(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// sendSeq reads the send queue's sequence number of a socket that is not
// connected: the ISN its SYN will carry.
func sendSeq(t *testing.T, fd int) uint32 {
	t.Helper()
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		t.Fatal(err)
	}
	defer unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF)
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue); err != nil {
		t.Fatal(err)
	}
	v, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(v)
}

// wellFormed asks for an ISN on a fresh socket and checks it is set.
func (bed *brokerBed) wellFormed(t *testing.T, after string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c := &Client{Path: bed.path}
	const isn = 0xdeadbeef
	if err := c.SetISNFrom(fd, isn, 0); err != nil {
		t.Fatalf("after %s: well-formed request: %v", after, err)
	}
	if got := sendSeq(t, fd); got != isn {
		t.Fatalf("after %s: ISN %#x, want %#x", after, got, uint32(isn))
	}
}

// raw sends one message with descriptors and returns the answer ("" when
// the broker closed without one).
func (bed *brokerBed) raw(t *testing.T, msg []byte, fds ...int) string {
	t.Helper()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: bed.path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	greeting := make([]byte, 512)
	if n, err := c.Read(greeting); err != nil || string(greeting[:n]) != "ok" {
		if err != nil {
			// The reset of a broker that answered and closed at once.
			n, _ = c.Read(greeting)
		}
		return string(greeting[:n])
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	// A broker that refuses at once may have closed before this write:
	// its answer is still there to read.
	c.WriteMsgUnix(msg, oob, nil)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		// The reset of a broker that answered and closed without reading.
		n, _ = c.Read(buf)
	}
	return string(buf[:n])
}

func request(isn uint32) []byte {
	m := []byte(brokerMagic + "0000")
	binary.BigEndian.PutUint32(m[4:], isn)
	return m
}

// openFDs counts this process's descriptors, waiting for it to come down
// to want. The broker closes its side of a connection in the goroutine
// that served it, after it answered, so the count comes down only once
// the scheduler ran that goroutine: under the race detector on a loaded
// 2-core machine that took over a second. The wait returns as soon as the
// count is down; only a descriptor still held after 10 s counts as kept.
func openFDs(t *testing.T, want int) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) <= want || time.Now().After(deadline) {
			return len(ents)
		}
	}
}

// TestBrokerRefusesBadRequests: every malformed request, wrong descriptor
// and misbehaving peer gets its one-line refusal (or nothing, when the
// peer is gone), no descriptor it sent stays open in the broker, and a
// well-formed request is answered after each.
func TestBrokerRefusesBadRequests(t *testing.T) {
	bed := newBrokerBed(t, &Server{ReadTimeout: 5 * time.Second})
	bed.wellFormed(t, "start")

	lnTCP, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lnTCP.Close()
	connected, err := net.Dial("tcp4", lnTCP.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer connected.Close()
	connFile, _ := connected.(*net.TCPConn).File()
	defer connFile.Close()
	// A plain TCP listener (Go's own listeners are MPTCP ones since Go
	// 1.24, refused as "not a TCP socket" anyway).
	listening := tcpSocket(t)
	if err := unix.Bind(listening, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(listening, 1); err != nil {
		t.Fatal(err)
	}
	mptcp, _ := lnTCP.(*net.TCPListener).File()
	defer mptcp.Close()
	udp, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(udp)
	unixSock, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(unixSock)
	pr, pw, _ := os.Pipe()
	defer pr.Close()
	defer pw.Close()
	many := make([]int, 20)
	for i := range many {
		many[i] = tcpSocket(t)
	}
	huge := append(request(1), make([]byte, 60000)...)
	// Bound by the caller: the broker cannot tell how its port was chosen.
	bound := tcpSocket(t)
	if err := unix.Bind(bound, &unix.SockaddrInet4{}); err != nil {
		t.Fatal(err)
	}
	bsa, _ := unix.Getsockname(bound)
	boundPort := bsa.(*unix.SockaddrInet4).Port

	baseline := openFDs(t, 0)
	for _, tc := range []struct {
		name string
		msg  []byte
		fds  []int
		want string
	}{
		{"garbage", []byte("GET / HTTP/1.0\r\n\r\n"), nil, "refused: not a seqknock broker request"},
		{"garbage with a socket", []byte("\x00\x01\x02"), []int{many[0]}, "refused: not a seqknock broker request"},
		{"a huge message", huge, []int{many[0]}, "refused: request too long"},
		{"a request one byte long", append(request(1), 'x', 'y', 'z'), []int{many[0]}, "refused: request too long"},
		{"a request between the two lengths", append(request(1), 'x'), []int{many[0]}, "refused: malformed request"},
		{"a bound socket", request(1), []int{bound}, "refused: the socket is bound (port " + strconv.Itoa(boundPort) + "): send an unbound one, the broker binds it"},
		{"a short request", request(1)[:6], []int{many[0]}, "refused: malformed request"},
		{"no socket", request(1), nil, "refused: no socket sent"},
		{"a UDP socket", request(1), []int{udp}, "refused: not a TCP socket"},
		{"a Unix socket", request(1), []int{unixSock}, "refused: not an IPv4 or IPv6 socket"},
		{"a pipe", request(1), []int{int(pr.Fd())}, "refused: not a socket"},
		{"a connected socket", request(1), []int{int(connFile.Fd())}, "refused: the socket is connected: send one that is not connected"},
		{"a listening socket", request(1), []int{listening}, "refused: the socket is listening: send one that is not connected"},
		{"Go's listening socket", request(1), []int{int(mptcp.Fd())}, "refused: not a TCP socket"},
		{"two sockets", request(1), many[:2], "refused: send exactly one socket"},
		{"twenty sockets (control message cut)", request(1), many, "refused: send exactly one socket"},
	} {
		if got := bed.raw(t, tc.msg, tc.fds...); got != tc.want {
			t.Errorf("%s: answer %q, want %q", tc.name, got, tc.want)
		}
		bed.wellFormed(t, tc.name)
		if n := openFDs(t, baseline); n > baseline {
			t.Errorf("%s: %d descriptors open, %d before: the broker kept some", tc.name, n, baseline)
		}
	}
	// The descriptors refused were not touched: the connected socket still
	// carries data, the ISN of the sockets sent in bulk is the kernel's.
	connected.Write([]byte("x"))
	if sendSeq(t, many[1]) == 1 || sendSeq(t, many[19]) == 1 {
		t.Error("a socket sent with others got the ISN anyway")
	}

	// A peer that goes away: before sending, after sending, and one that
	// sends an empty message.
	for _, tc := range []struct {
		name string
		do   func(c *net.UnixConn)
	}{
		{"close before sending", func(c *net.UnixConn) {}},
		{"close before the answer", func(c *net.UnixConn) { c.WriteMsgUnix(request(7), unix.UnixRights(many[2]), nil) }},
		{"an empty message", func(c *net.UnixConn) { c.Write(nil); time.Sleep(50 * time.Millisecond) }},
	} {
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: bed.path, Net: "unixpacket"})
		if err != nil {
			t.Fatal(err)
		}
		tc.do(c)
		c.Close()
		bed.wellFormed(t, tc.name)
	}
	if n := openFDs(t, baseline); n > baseline {
		t.Errorf("%d descriptors open, %d before: the broker kept some", n, baseline)
	}
}

// TestBrokerSlowCallerBlocksNoOne: callers that connect and send nothing
// (as many as one user may have in flight) do not delay another caller's
// answer; the next caller of that user beyond its limit is told "busy" at
// once.
func TestBrokerSlowCallerBlocksNoOne(t *testing.T) {
	bed := newBrokerBed(t, &Server{ReadTimeout: 10 * time.Second, MaxPerUID: 8, MaxInFlight: 100})
	u := netnstest.NewUser(t)
	u.Join(bed.g)
	var slow []*net.UnixConn
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()
	for i := 0; i < 8; i++ {
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: bed.path, Net: "unixpacket"})
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
	}
	time.Sleep(100 * time.Millisecond)
	// Root's limit is reached: its next request is refused at once.
	start := time.Now()
	got := bed.raw(t, request(1), tcpSocket(t))
	if !strings.HasPrefix(got, "refused: busy: too many requests in flight from uid 0") || time.Since(start) > time.Second {
		t.Errorf("over the limit: %q after %v", got, time.Since(start))
	}
	// Another user is served at once.
	ask := netnstest.Build(t, "client/broker/testdata/brokerask")
	start = time.Now()
	out, err := u.Command(nil, ask, bed.path).CombinedOutput()
	if err != nil || string(out) != "ok\n" || time.Since(start) > 3*time.Second {
		t.Errorf("another user while root's slow callers wait: %v: %q after %v", err, out, time.Since(start))
	}
	for _, c := range slow {
		c.Close()
	}
	slow = nil
	time.Sleep(100 * time.Millisecond)
	bed.wellFormed(t, "slow callers")
}

// TestBrokerFlood: 1,000 requests at once each get an answer, "ok" (with
// the ISN set) or "busy" (after the client's retries for up to 2 s), and a
// well-formed request is answered after.
func TestBrokerFlood(t *testing.T) {
	bed := newBrokerBed(t, &Server{})
	baseline := openFDs(t, 0)
	const n = 1000
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]int{}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				mu.Lock()
				answers["socket: "+err.Error()]++
				mu.Unlock()
				return
			}
			defer unix.Close(fd)
			c := &Client{Path: bed.path}
			err = c.SetISNFrom(fd, uint32(i+1), 0)
			a := "ok"
			if err != nil {
				a = err.Error()
				if strings.Contains(a, "busy") {
					a = "busy"
				}
			} else if got := sendSeqQuiet(fd); got != uint32(i+1) {
				a = "wrong ISN " + strconv.Itoa(int(got))
			}
			mu.Lock()
			answers[a]++
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	t.Logf("1,000 concurrent requests: %v", answers)
	if answers["ok"]+answers["busy"] != n || answers["ok"] < 32 {
		t.Errorf("answers: %v", answers)
	}
	bed.wellFormed(t, "1,000 concurrent requests")
	if got := openFDs(t, baseline); got > baseline {
		t.Errorf("%d descriptors open, %d before", got, baseline)
	}
}

func sendSeqQuiet(fd int) uint32 {
	unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON)
	defer unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF)
	unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue)
	v, _ := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ)
	return uint32(v)
}

// TestBrokerPeerAccess: real users. A member of the broker's group (a
// supplementary group, as usermod -aG makes it) is served; the same user
// with its groups cleared, and a user outside the group, are refused with
// one line naming the group, by the broker itself when the socket lets
// them connect, and by the socket's mode (0660) otherwise. Membership is
// the caller's as it connects (SO_PEERCRED, SO_PEERGROUPS), not the user
// database's.
func TestBrokerPeerAccess(t *testing.T) {
	bed := newBrokerBed(t, &Server{})
	ask := netnstest.Build(t, "client/broker/testdata/brokerask")
	member, outsider := netnstest.NewUser(t), netnstest.NewUser(t)
	member.Join(bed.g)
	// run runs brokerask as u, with its groups from the user database, or
	// (gid >= 0) with gid and no supplementary group.
	run := func(u *netnstest.User, gid int) string {
		cmd := u.Command(nil, ask, bed.path)
		if gid >= 0 {
			cmd.Args = []string{"setpriv", "--reuid=" + strconv.Itoa(u.UID), "--regid=" + strconv.Itoa(gid), "--clear-groups", ask, bed.path}
		}
		out, _ := cmd.CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	if got := run(member, -1); got != "ok" {
		t.Errorf("member: %q", got)
	}
	if got := run(outsider, -1); got != "broker "+bed.path+": permission denied" {
		t.Errorf("outsider, socket mode 0660: %q", got)
	}
	// The advice names the broker's group (not the default one, seqknock),
	// learned from the socket's group when its mode keeps the user out,
	// and from the broker's refusal otherwise.
	note := func(mode os.FileMode) {
		t.Helper()
		os.Chmod(bed.path, mode)
		out, _ := outsider.Command(nil, ask, bed.path, "note").CombinedOutput()
		if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, "not ready: ") || strings.Count(got, "\n") != 0 ||
			!strings.Contains(got, "join its group ("+bed.g.Name+"), then log in again") || strings.Contains(got, "group (seqknock)") {
			t.Errorf("outsider, socket mode %o: %q, want one line naming group %s", mode, got, bed.g.Name)
		}
	}
	note(0o660)
	note(0o666)
	os.Chmod(bed.path, 0o660)
	// The broker's own check, with the socket open to all.
	os.Chmod(bed.path, 0o666)
	for _, tc := range []struct {
		name string
		u    *netnstest.User
		gid  int
		want string
	}{
		{"outsider", outsider, -1, "refused: uid " + strconv.Itoa(outsider.UID) + " is neither root nor in group " + bed.g.Name},
		{"member with groups cleared", member, member.GID, "refused: uid " + strconv.Itoa(member.UID) + " is neither root nor in group " + bed.g.Name},
		{"outsider with the group as its gid", outsider, bed.g.GID, "ok"},
	} {
		got := run(tc.u, tc.gid)
		if !strings.HasSuffix(got, tc.want) || strings.Count(got, "\n") != 0 {
			t.Errorf("%s: %q, want one line ending in %q", tc.name, got, tc.want)
		}
	}
	if got := run(member, -1); got != "ok" {
		t.Errorf("member: %q", got)
	}
}

// TestListenBrokerPath: the broker replaces an old socket at its path and
// refuses a symbolic link, a file, and a directory others may write to.
func TestListenBrokerPath(t *testing.T) {
	netnstest.RequireRoot(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("precious\n"), 0o644)
	link := filepath.Join(dir, "link.sock")
	os.Symlink(target, link)
	if _, err := Listen(link, 0); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("symbolic link: %v", err)
	}
	if _, err := Listen(target, 0); err == nil {
		t.Error("regular file: no error")
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Errorf("target changed: %q", b)
	}
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if _, err := Listen(filepath.Join(open, "b.sock"), 0); err == nil || !strings.Contains(err.Error(), "only its owner may write") {
		t.Errorf("world-writable directory: %v", err)
	}
	p := filepath.Join(dir, "sub", "b.sock")
	ln, err := Listen(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	ln, err = Listen(p, 0)
	if err != nil {
		t.Fatalf("over an old socket: %v", err)
	}
	defer ln.Close()
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v", fi.Mode())
	}
}

// TestBrokerCallerRacesConnect: the caller still holds the socket it sent
// and connect()s it from another thread while the broker works on it. In
// repair mode, connect() makes a socket established without a handshake;
// such a socket must never be left usable: the broker disconnects it
// without a packet and leaves it in repair mode, where it sends nothing.
// A socket connected by a real handshake (connect() after the broker was
// done) is the caller's own business.
func TestBrokerCallerRacesConnect(t *testing.T) {
	bed := newBrokerBed(t, &Server{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan int, 1024)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c.RemoteAddr().(*net.TCPAddr).Port
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	sa := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	outcomes := map[string]int{}
	for i := 0; i < 500; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		raced := make(chan struct{})
		// One connect(), after a delay that walks through the broker's
		// work on the socket (a few µs to a few tens of µs after the
		// request is sent), trial by trial.
		delay := time.Duration(i%100) * time.Microsecond
		go func() {
			defer close(raced)
			<-start
			for t0 := time.Now(); time.Since(t0) < delay; {
			}
			unix.Connect(fd, sa)
		}()
		c := &Client{Path: bed.path}
		if err := c.Check(); err != nil {
			t.Fatal(err)
		}
		close(start)
		berr := c.SetISNFrom(fd, 0x01020304, 0)
		<-raced
		info, _ := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		local, _ := unix.Getsockname(fd)
		lport := 0
		if l, ok := local.(*unix.SockaddrInet4); ok {
			lport = l.Port
		}
		handshake := false
		if info.State == 1 {
			deadline := time.After(time.Second)
		wait:
			for {
				select {
				case p := <-accepted:
					if p == lport {
						handshake = true
						break wait
					}
				case <-deadline:
					break wait
				}
			}
		}
		// Repair mode is never left on: in it, the caller could connect
		// without a handshake again, or bind a port another socket
		// listens on and take its connections (TCP_REPAIR_QUEUE needs no
		// privilege, only repair mode).
		if unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, 0) == nil {
			outcomes["left in repair mode"]++
			t.Errorf("run %d: broker said %v; the socket is left in repair mode", i, berr)
		}
		// Can the caller send on it?
		_, werr := unix.Write(fd, []byte("x"))
		switch {
		case info.State == 1 && !handshake && werr == nil:
			outcomes["established without a handshake, and usable"]++
			t.Errorf("run %d: broker said %v; the socket is established without a handshake and takes data", i, berr)
		case info.State == 1 && handshake || berr == nil && info.State == 8:
			outcomes["connected by a handshake"]++
		case berr != nil:
			outcomes["refused: "+strings.TrimPrefix(berr.Error(), "broker "+bed.path+": refused: ")]++
		default:
			outcomes["state "+strconv.Itoa(int(info.State))]++
		}
		unix.Close(fd)
	}
	t.Logf("outcomes: %v", outcomes)
	bed.wellFormed(t, "racing callers")
}

// TestBrokerCommand runs `seqknock broker` (both builds): by hand on a
// path it makes, and socket-activated (LISTEN_PID, LISTEN_FDS, fd 3); it
// serves a member, exits 0 after --exit-idle, and refuses an unknown group,
// a user without CAP_NET_ADMIN, sudo, and a setcap copy run by a user.
func TestBrokerCommand(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv", "setcap")
	g := netnstest.NewGroup(t)
	u := netnstest.NewUser(t)
	u.Join(g)
	ask := netnstest.Build(t, "client/broker/testdata/brokerask")
	for _, build := range builds {
		t.Run(build.name, func(t *testing.T) {
			bin := build.build(t, "client/cmd/seqknock")
			dir, _ := os.MkdirTemp("", "seqknock-brokercmd-")
			defer os.RemoveAll(dir)
			os.Chmod(dir, 0o755)
			path := filepath.Join(dir, "run", "broker.sock")
			capBin := netnstest.SetcapCopy(t, bin)

			serve := func(cmd *exec.Cmd) {
				t.Helper()
				var stderr netnstest.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				exited := false
				defer func() {
					if !exited {
						cmd.Process.Kill()
						<-done
					}
				}()
				var out []byte
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					if out, _ = u.Command(nil, ask, path).CombinedOutput(); string(out) == "ok\n" {
						break
					}
				}
				if string(out) != "ok\n" {
					t.Fatalf("member: %q; broker: %s", out, stderr.String())
				}
				select {
				case err := <-done:
					exited = true
					if err != nil {
						t.Errorf("broker after --exit-idle: %v: %s", err, stderr.String())
					}
				case <-time.After(10 * time.Second):
					t.Errorf("broker did not exit when idle: %s", stderr.String())
				}
				if !strings.Contains(stderr.String(), "broker serving") {
					t.Errorf("broker log: %s", stderr.String())
				}
			}
			// By hand: it makes the directory and the socket.
			serve(exec.Command(bin, "broker", "--listen", path, "--group", g.Name, "--exit-idle", "1s"))
			if _, err := os.Lstat(path); err == nil {
				t.Error("the socket stays after the broker exited")
			}
			// Socket-activated: the socket is systemd's (here: the test's).
			ln, err := Listen(path, g.GID)
			if err != nil {
				t.Fatal(err)
			}
			f, _ := ln.File()
			ln.SetUnlinkOnClose(false)
			ln.Close()
			cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" broker --group "$1" --exit-idle 1s`, bin, strconv.Itoa(g.GID))
			cmd.ExtraFiles = []*os.File{f}
			serve(cmd)
			f.Close()
			if _, err := os.Lstat(path); err != nil {
				t.Errorf("the activated broker removed systemd's socket: %v", err)
			}
			os.Remove(path)

			for _, tc := range []struct {
				name string
				cmd  *exec.Cmd
				code int
				want string
			}{
				{"unknown group", exec.Command(bin, "broker", "--listen", path, "--group", "no-such-group-here"), 2, "--group no-such-group-here: no such group"},
				{"no CAP_NET_ADMIN", u.Command(nil, bin, "broker", "--listen", path, "--group", g.Name), 1, "needs CAP_NET_ADMIN"},
				{"under sudo", func() *exec.Cmd {
					c := exec.Command(bin, "broker", "--listen", path, "--group", g.Name)
					c.Env = []string{"PATH=/usr/bin:/bin", "SUDO_UID=" + strconv.Itoa(u.UID), "SUDO_GID=" + strconv.Itoa(u.GID)}
					return c
				}(), 1, "broker: refused under sudo for uid " + strconv.Itoa(u.UID) + ": its user could stop it in the middle of a request; run the broker as the system service"},
				{"from a setcap copy", u.Command(nil, capBin, "broker", "--listen", path, "--group", g.Name), 1,
					"broker: refused with a file capability (setcap) for a user who is not root: its user could stop it in the middle of a request; run the broker as the system service"},
			} {
				out, err := tc.cmd.CombinedOutput()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				}
				if code != tc.code || !strings.Contains(string(out), tc.want) || strings.Count(string(out), "\n") != 1 {
					t.Errorf("%s: exit %d: %q, want %d and one line with %q", tc.name, code, out, tc.code, tc.want)
				}
			}
		})
	}
}

// TestBrokerServeLeavesListener: Serve answers on the listener it is
// given until its context ends, then returns nil with the listener closed
// and the socket's file left in place (its maker removes it).
func TestBrokerServeLeavesListener(t *testing.T) {
	netnstest.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "broker.sock")
	ln, err := Listen(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{GID: 0, GroupName: "root"}).Serve(ctx, ln) }()
	bc := &Client{Path: path}
	for deadline := time.Now().Add(10 * time.Second); bc.Check() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the broker did not answer")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the listener after Serve: Accept: %v, want it closed", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Serve removed the socket's file: %v", err)
	}
}

// TestBrokerDisarm: what a caller can do with its socket while the broker
// has it in repair mode (connect without a handshake; bind a port another
// socket listens on, with SK_FORCE_REUSE, and listen there) is undone by
// disarm, which never leaves the socket in repair mode, and sends no
// packet doing it (the peer accepts nothing, the listener keeps its port).
func TestBrokerDisarm(t *testing.T) {
	netnstest.RequireRoot(t)
	victim := tcpSocket(t)
	if err := unix.Bind(victim, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(victim, 8); err != nil {
		t.Fatal(err)
	}
	vsa, _ := unix.Getsockname(victim)
	for _, tc := range []struct {
		name string
		use  func(fd int) error
	}{
		{"connected without a handshake", func(fd int) error { return unix.Connect(fd, vsa) }},
		{"listening on another socket's port", func(fd int) error {
			if err := unix.Bind(fd, vsa); err != nil {
				return err
			}
			return unix.Listen(fd, 8)
		}},
	} {
		fd := tcpSocket(t)
		if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
			t.Fatal(err)
		}
		if err := tc.use(fd); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := disarm(fd, errors.New("raced")); err == nil || !strings.HasSuffix(err.Error(), "the socket was disconnected") {
			t.Errorf("%s: disarm: %v", tc.name, err)
		}
		if unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, 0) == nil {
			t.Errorf("%s: left in repair mode", tc.name)
		}
		if info, _ := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); info.State != tcpClose {
			t.Errorf("%s: state %d, want closed", tc.name, info.State)
		}
	}
	// No handshake reached the listener, and it still holds its port.
	unix.SetNonblock(victim, true)
	if nfd, _, err := unix.Accept(victim); err == nil {
		unix.Close(nfd)
		t.Error("the listener accepted a connection")
	}
	c := tcpSocket(t)
	if err := unix.Connect(c, vsa); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	nfd, _, err := unix.Accept(victim)
	if err != nil {
		t.Errorf("the listener lost its port: %v", err)
	} else {
		unix.Close(nfd)
	}
}

// TestBrokerLockedSocket: a caller whose socket is locked by another of
// its threads (a setsockopt whose copy from memory waits on a page fault:
// here a userfaultfd page, for an unprivileged user a page of a FUSE file
// it serves) holds the broker's calls on that socket; other callers are
// still answered.
func TestBrokerLockedSocket(t *testing.T) {
	bed := newBrokerBed(t, &Server{})
	fd := tcpSocket(t)
	uffd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if e != 0 {
		t.Fatalf("userfaultfd: %v", e)
	}
	defer unix.Close(int(uffd))
	const uffdioAPI, uffdioRegister = 0xc018aa3f, 0xc020aa00 // _IOWR(0xaa, 0x3f or 0x00, ...)
	api := [3]uint64{0xaa, 0, 0}                             // struct uffdio_api, UFFD_API
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uffd, uffdioAPI, uintptr(unsafe.Pointer(&api))); e != 0 {
		t.Fatalf("UFFDIO_API: %v", e)
	}
	mem, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	// struct uffdio_register: the page, UFFDIO_REGISTER_MODE_MISSING.
	reg := [4]uint64{uint64(uintptr(unsafe.Pointer(&mem[0]))), 4096, 1, 0}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uffd, uffdioRegister, uintptr(unsafe.Pointer(&reg))); e != 0 {
		t.Fatalf("UFFDIO_REGISTER: %v", e)
	}
	// A struct sock_fprog whose one instruction is on that page: the
	// kernel copies it with the socket locked.
	prog := &unix.SockFprog{Len: 1, Filter: (*unix.SockFilter)(unsafe.Pointer(&mem[0]))}
	locked := make(chan struct{})
	go func() {
		defer close(locked)
		unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
			uintptr(unsafe.Pointer(prog)), unsafe.Sizeof(*prog), 0)
	}()
	time.Sleep(100 * time.Millisecond)
	held := make(chan error, 1)
	go func() { held <- (&Client{Path: bed.path}).SetISNFrom(fd, 1, 0) }()
	time.Sleep(300 * time.Millisecond)
	bed.wellFormed(t, "a caller whose socket is locked")
	// Released: the held request ends too.
	unix.Close(int(uffd))
	<-locked
	<-held
	unix.Munmap(mem)
}

// builds are the two ways the client is built: CGO_ENABLED=0 (the release
// build) and with cgo (plain go build or go install where a C compiler is).
var builds = []struct {
	name  string
	build func(t testing.TB, pkg string) string
}{{"static", netnstest.Build}, {"cgo", netnstest.BuildCgo}}
