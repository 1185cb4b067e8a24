//go:build linux

package listenlock

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"golang.org/x/sys/unix"
)

// markRule marks, like an admit rule, the SYNs from source ports
// knockPort and knockPort+1 with testBit, in a namespace.
const (
	testBit   = 1 << 24
	knockPort = 40000
	markRule  = "table inet marker {\n chain input {\n  type filter hook input priority filter - 10;\n" +
		"  tcp flags syn tcp sport { 40000, 40001 } counter meta mark set meta mark | 0x01000000\n }\n" +
		"}\n"
)

// TestKernelRunsTheFilter attaches the filter to an IPv4 and an IPv6
// listener in a namespace where an nft rule marks the SYNs from port
// 40000: a plain connect gets no answer (times out, no reset), a marked
// one connects and reads the greeting, a connection established before
// the lock keeps working, and once the marking rule is gone no SYN gets
// in.
func TestKernelRunsTheFilter(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "llk")
	for _, addr := range []string{"127.0.0.1:2222", "[::1]:2222"} {
		t.Run(addr, func(t *testing.T) {
			ln := listen(t, ns, addr)
			fd := sockFD(t, ln)
			before := dial(t, ns, addr, 0)
			if err := before.err; err != nil {
				t.Fatalf("connect before the lock: %v", err)
			}
			defer before.conn.Close()

			changed, err := Attach(fd, testBit)
			if err != nil || !changed {
				t.Fatalf("Attach = %v, %v", changed, err)
			}
			if st, err := Check(fd, testBit); st != Locked || err != nil {
				t.Errorf("Check after Attach = %v, %v", st, err)
			}
			if changed, err := Attach(fd, testBit); changed || err != nil {
				t.Errorf("Attach again = %v, %v; want no change", changed, err)
			}

			if r := dial(t, ns, addr, 0); r.err == nil {
				r.conn.Close()
				t.Errorf("a SYN without the mark got in, before the marking rule exists")
			} else if !isTimeout(r.err) {
				t.Errorf("plain connect: %v; want a timeout (no answer, no reset)", r.err)
			}
			nft := ns.Command("nft", "-f", "-")
			nft.Stdin = strings.NewReader(markRule)
			if out, err := nft.CombinedOutput(); err != nil {
				t.Fatalf("nft -f: %v: %s", err, out)
			}
			if r := dial(t, ns, addr, 0); r.err == nil {
				r.conn.Close()
				t.Errorf("plain connect got in")
			} else if !isTimeout(r.err) {
				t.Errorf("plain connect: %v; want a timeout (no answer, no reset)", r.err)
			}
			// Each subtest knocks from its own source port: the last
			// one's is in TIME_WAIT.
			sport := knockPort
			if strings.HasPrefix(addr, "[") {
				sport++
			}
			r := dial(t, ns, addr, sport)
			if r.err != nil {
				t.Fatalf("marked connect: %v\n%s", r.err, ns.MustRun("nft", "list", "ruleset"))
			}
			r.conn.Close()
			if r.greeting != "hello\n" {
				t.Errorf("marked connect read %q", r.greeting)
			}
			// The session opened before the lock still carries data.
			if _, err := before.conn.Write([]byte("ping\n")); err != nil {
				t.Errorf("write on the old session: %v", err)
			}
			if line, err := bufio.NewReader(before.conn).ReadString('\n'); err != nil || line != "ping\n" {
				t.Errorf("old session echo: %q, %v", line, err)
			}
			ns.MustRun("nft", "flush", "ruleset")
			if r := dial(t, ns, addr, knockPort+2); r.err == nil {
				r.conn.Close()
				t.Errorf("after flush ruleset, a SYN got in")
			}
		})
	}
}

// TestAttachRefusesForeign: someone else's filter is left alone, an older
// lock for another bit is replaced, and a locked filter is reported.
func TestAttachRefusesForeign(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "llf")
	ln := listen(t, ns, "127.0.0.1:2223")
	fd := sockFD(t, ln)
	if st, err := Check(fd, testBit); st != Unlocked || err != nil {
		t.Errorf("Check of a bare socket = %v, %v", st, err)
	}
	old, _ := Program(1 << 3)
	attachRaw(t, fd, old)
	if st, _ := Check(fd, testBit); st != OtherBit {
		t.Errorf("Check of an older lock = %v", st)
	}
	if changed, err := Attach(fd, testBit); !changed || err != nil {
		t.Errorf("Attach over an older lock = %v, %v", changed, err)
	}
	if ok, err := Detach(fd); !ok || err != nil {
		t.Errorf("Detach of our lock = %v, %v", ok, err)
	}
	if st, _ := Check(fd, testBit); st != Unlocked {
		t.Errorf("Check after Detach = %v", st)
	}
	if _, err := Attach(fd, testBit); err != nil {
		t.Fatal(err)
	}
	foreign := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff}}
	attachRaw(t, fd, foreign)
	if st, _ := Check(fd, testBit); st != Foreign {
		t.Errorf("Check of a foreign filter = %v", st)
	}
	if _, err := Attach(fd, testBit); !errors.Is(err, ErrForeign) {
		t.Errorf("Attach over a foreign filter: %v", err)
	}
	if ok, err := Detach(fd); ok || err != nil {
		t.Errorf("Detach of a foreign filter = %v, %v", ok, err)
	}
	if got, _ := Filter(fd); !slices.Equal(got, foreign) {
		t.Errorf("the foreign filter was changed: %v", got)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
	attachRaw(t, fd, old)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_LOCK_FILTER, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := Attach(fd, testBit); err == nil || !strings.Contains(err.Error(), "SO_LOCK_FILTER") {
		t.Errorf("Attach to a locked filter: %v", err)
	}
}

// TestMPTCPRefused: a Multipath TCP listener takes no socket filter, and
// Attach says so.
func TestMPTCPRefused(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "llm")
	var ln net.Listener
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	if err := ns.Do(func() (err error) { ln, err = lc.Listen(context.Background(), "tcp", "127.0.0.1:2224"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd := sockFD(t, ln.(*net.TCPListener))
	if proto, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); proto != unix.IPPROTO_MPTCP {
		t.Skipf("no MPTCP listener here (protocol %d)", proto)
	}
	if _, err := Attach(fd, testBit); !errors.Is(err, ErrMPTCP) {
		t.Errorf("Attach to an MPTCP listener: %v", err)
	}
}

func attachRaw(t *testing.T, fd int, prog []unix.SockFilter) {
	t.Helper()
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
		t.Fatal(err)
	}
}

// listen opens a listener in ns that greets each connection with
// "hello\n" and echoes what it reads.
func listen(t *testing.T, ns *netnstest.NS, addr string) *net.TCPListener {
	t.Helper()
	var ln net.Listener
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // see TestMPTCPRefused
	if err := ns.Do(func() (err error) { ln, err = lc.Listen(context.Background(), "tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("hello\n"))
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
	return ln.(*net.TCPListener)
}

// sockFD returns the listener's descriptor (valid while ln is open),
// without File's switch to blocking mode.
func sockFD(t *testing.T, ln *net.TCPListener) int {
	t.Helper()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

type dialResult struct {
	conn     net.Conn
	greeting string
	err      error
}

// dial connects from ns to addr (from source port sport when not 0)
// within 400 ms, shorter than the first SYN retransmission, and reads the
// greeting.
func dial(t *testing.T, ns *netnstest.NS, addr string, sport int) dialResult {
	t.Helper()
	var r dialResult
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: 400 * time.Millisecond}
		if sport != 0 {
			d.LocalAddr = &net.TCPAddr{Port: sport}
		}
		r.conn, r.err = d.Dial("tcp", addr)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.err == nil {
		r.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		br := bufio.NewReader(r.conn)
		r.greeting, r.err = br.ReadString('\n')
		r.conn.SetReadDeadline(time.Time{})
	}
	return r
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, os.ErrClosed)
}
