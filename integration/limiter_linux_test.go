//go:build linux

package integration

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSpoofedFloodKeepsKnocks: an attacker floods 2,000 random-ISN SYNs a
// second with the client's own source address (spoofed, as anyone can),
// which locks that source out; every valid knock the client sends in the
// meantime is admitted at its first SYN all the same, since knocks are looked up before
// any lockout.
func TestSpoofedFloodKeepsKnocks(t *testing.T) {
	t.Parallel()
	k := newKnockBed(t, 200)
	k.start(t, "drop", "")
	victim := netip.MustParseAddr(k.cl.B4)
	before := k.live(t)
	ctx, cancel := context.WithCancel(context.Background())
	sent := make(chan int, 1)
	go func() { sent <- k.floodTo(ctx, t, 22, []netip.Addr{victim}, 1_000_000, 2_000, 11) }()
	time.Sleep(500 * time.Millisecond)
	mid := k.live(t)
	const knocks = 40
	ok := 0
	for i := 0; i < knocks; i++ {
		// Admitted means at the first SYN: before the kernel's first
		// retransmission (1 s), which a lockout that lapses might let in.
		if err := k.dialWithin(900 * time.Millisecond); err != nil {
			t.Logf("knock %d during the flood: %v", i, err)
			continue
		}
		ok++
	}
	late := k.live(t)
	cancel()
	n := <-sent
	admitted := late.Admitted.Packets - before.Admitted.Packets
	locked := late.Lockout.Packets - before.Lockout.Packets
	t.Logf("%d spoofed SYNs sent; %d of %d knocks connected, %d admitted; %d SYNs dropped by the lockout, %d source(s) locked out mid-flood",
		n, ok, knocks, admitted, locked, mid.LockedOut)
	if mid.LockedOut != 1 || locked == 0 {
		t.Errorf("the flood locked out %d sources and dropped %d SYNs: the victim's source was not locked out, the test shows nothing", mid.LockedOut, locked)
	}
	if ok != knocks || admitted != knocks {
		t.Errorf("%d of %d knocks connected (%d admitted) while a spoofer flooded with the client's address, want all", ok, knocks, admitted)
	}
}

// TestResetBurstLikeClosedPort: 60 SYNs at 200 a second, over the guess
// limit (10 a second, burst 20), from one source, to a closed port of the
// server and then to the protected port. In reset mode the protected port
// answers every one with a reset, as the closed port does, although the
// limiter locks the source out; in drop mode it answers none.
func TestResetBurstLikeClosedPort(t *testing.T) {
	for _, c := range []struct {
		mode   string
		subnet int
		want   func(closed int) int
	}{{"reset", 202, func(closed int) int { return closed }}, {"drop", 204, func(int) int { return 0 }}} {
		t.Run(c.mode, func(t *testing.T) {
			t.Parallel()
			k := newKnockBed(t, c.subnet)
			k.start(t, c.mode, "")
			src := []netip.Addr{netip.MustParseAddr(k.al.B4)}
			closed := k.resetsTo(t, unusedPort, src)
			before := k.live(t)
			protected := k.resetsTo(t, 22, src)
			after := k.live(t)
			locked := after.Lockout.Packets - before.Lockout.Packets
			t.Logf("%s mode: 60 SYNs at 200/s: %d resets from closed port %d, %d from protected port 22 (%d SYNs met the lockout)",
				c.mode, closed, unusedPort, protected, locked)
			if closed != 60 {
				t.Errorf("%d resets from the closed port, want 60", closed)
			}
			if locked == 0 {
				t.Errorf("the burst never met the lockout: the test shows nothing")
			}
			if want := c.want(closed); protected != want {
				t.Errorf("%s mode: %d resets from the protected port, want %d (the closed port gave %d)", c.mode, protected, want, closed)
			}
		})
	}
}

// dialWithin knocks and connects from the client namespace, giving up
// after limit.
func (k *knockBed) dialWithin(limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	return k.cli.Do(func() error {
		conn, err := k.dialer.Dial(ctx, k.cl.A4, 22)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

// resetsTo sends 60 random-ISN SYNs at 200 a second from srcs to the
// server's port, and counts the resets that come back to the attacker
// namespace from that port within 500 ms of the last.
func (k *knockBed) resetsTo(t *testing.T, port uint16, srcs []netip.Addr) int {
	t.Helper()
	var fd int
	if err := k.atk.Do(func() (err error) { fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP); return }); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	server := netip.MustParseAddr(k.al.A4).As4()
	count := make(chan int, 1)
	done := make(chan struct{})
	go func() {
		n := 0
		buf := make([]byte, 1500)
		for {
			m, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				select {
				case <-done:
					count <- n
					return
				default:
					continue
				}
			}
			p := buf[:m]
			if m < 20 || [4]byte(p[12:16]) != server {
				continue
			}
			tcp := p[int(p[0]&0x0f)*4:]
			if len(tcp) >= 14 && uint16(tcp[0])<<8|uint16(tcp[1]) == port && tcp[13]&0x04 != 0 {
				n++
			}
		}
	}()
	if sent := k.floodTo(context.Background(), t, port, srcs, 60, 200, uint64(port)); sent != 60 {
		t.Fatalf("sent %d SYNs, want 60", sent)
	}
	time.Sleep(500 * time.Millisecond)
	close(done)
	return <-count
}
