//go:build linux

package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/totp"
	"golang.org/x/sys/unix"
)

// TestSpoofedFloodKeepsKnocks: an attacker floods 1,000 random-ISN SYNs a
// second with the client's own source address (spoofed, as anyone can),
// which locks that source out; after 2.5 s of it (more SYNs than the
// budget's burst), every valid knock the client sends is admitted at its
// first SYN all the same, since the flood stays under the lookup budget
// that locked-out sources share (lockout_lookup_limit, 2,000 a second by
// default). With lockout_lookup_limit "0" (no lookup while locked out)
// none is: the other side of the trade.
func TestSpoofedFloodKeepsKnocks(t *testing.T) {
	for _, c := range []struct {
		name, extra string
		subnet      int
		knocks      int
		want        func(n int) int
	}{
		{"budget", "", 200, 40, func(n int) int { return n }},
		{"no budget", "lockout_lookup_limit = \"0\"", 208, 5, func(int) int { return 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			k := newKnockBed(t, c.subnet)
			k.start(t, "drop", c.extra)
			victim := netip.MustParseAddr(k.cl.B4)
			before := k.live(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sent := make(chan int, 1)
			go func() { sent <- k.floodTo(ctx, t, 22, []netip.Addr{victim}, 1_000_000, 1_000, 11) }()
			time.Sleep(2500 * time.Millisecond)
			mid := k.live(t)
			ok := 0
			for i := 0; i < c.knocks; i++ {
				// Admitted means at the first SYN: before the kernel's
				// first retransmission (1 s), which a lockout that lapses
				// might let in.
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
			t.Logf("%s: %d spoofed SYNs sent; %d of %d knocks connected, %d admitted; %d SYNs dropped by the lockout, %d source(s) locked out mid-flood",
				c.name, n, ok, c.knocks, admitted, locked, mid.LockedOut)
			if mid.LockedOut != 1 || locked == 0 {
				t.Errorf("the flood locked out %d sources and dropped %d SYNs: the victim's source was not locked out, the test shows nothing", mid.LockedOut, locked)
			}
			if want := c.want(c.knocks); ok != want || admitted != uint64(want) {
				t.Errorf("%d of %d knocks connected (%d admitted) while a spoofer flooded with the client's address, want %d", ok, c.knocks, admitted, want)
			}
		})
	}
}

// Guess limits as the bed's defaults set them: guess_limit 10/second, its
// burst 20, and lockout_lookup_limit 2000/second with a burst as large.
const (
	bedGuessRate, bedGuessBurst     = 10, 20
	bedLookupBudget, bedLookupBurst = 2000, 2000
)

// TestLockedOutGuessingBounded: one source floods SYNs from its own
// address as fast as the test sends them (up to 50,000 a second) for 2 s,
// and a random twentieth of them carry valid, unspent knocks of 20 users
// (the test knows the keys; each knock is sent once). The source is locked
// out after its burst, so its SYNs are looked up only within the budget:
// the knocks admitted must stay under (guess_limit + budget) x duration +
// the bursts, times the twentieth. With every SYN looked up, each knock
// sent would get in, many times that bound.
func TestLockedOutGuessingBounded(t *testing.T) {
	t.Parallel()
	k := newKnockBed(t, 206)
	const users = 20
	var extra strings.Builder
	keys := [][]byte{k.key}
	for i := 1; i < users; i++ {
		key := []byte(fmt.Sprintf("locked-out-guess-key-%02d-0123456789", i))
		keys = append(keys, key)
		name := fmt.Sprintf("v%d.key", i)
		if err := os.WriteFile(filepath.Join(k.dir, name), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&extra, "[[user]]\nname = \"v%d\"\nkey_file = %q\n", i, name)
	}
	k.start(t, "drop", extra.String())
	// The knocks of this counter and the next: valid for at least one
	// period (10 s) from now, far longer than the flood.
	now := totp.Counter(time.Now(), k.period)
	var knocks []uint32
	seen := map[uint32]bool{}
	for _, key := range keys {
		d, err := totp.NewDeriver(key, "")
		if err != nil {
			t.Fatal(err)
		}
		for c := now; c <= now+1; c++ {
			for s := 0; s < 256; s++ {
				if isn := d.ISN(22, c, uint8(s)); !seen[isn] {
					seen[isn] = true
					knocks = append(knocks, isn)
				}
			}
		}
	}
	const (
		rate     = 50_000
		dur      = 2 * time.Second
		fraction = 1.0 / 20
	)
	before := k.live(t)
	start := time.Now()
	sent, valid := k.floodWithKnocks(t, netip.MustParseAddr(k.al.B4), rate*int(dur.Seconds()), rate, knocks, fraction, seen)
	took := time.Since(start).Seconds()
	time.Sleep(200 * time.Millisecond) // the last SYNs through the rules
	after := k.live(t)
	admitted := after.Admitted.Packets - before.Admitted.Packets
	locked := after.Lockout.Packets - before.Lockout.Packets
	// Looked up at most: the guess limit's rate and burst, the budget's
	// rate and burst, and a SYN per lapse of the 1 s lockout.
	lookups := (bedGuessRate+bedLookupBudget+1)*took + bedGuessBurst + bedLookupBurst
	bound := uint64(1.25*lookups*fraction) + 10
	t.Logf("%d SYNs in %.2f s (%.0f a second), %d valid knocks among them; %d admitted (bound %d: %.0f lookups x %.2f), %d SYNs met the lockout",
		sent, took, float64(sent)/took, valid, admitted, bound, lookups, fraction, locked)
	if uint64(valid) < 3*bound {
		t.Fatalf("only %d valid knocks sent (%.0f SYNs a second), under 3 x the bound %d: the flood was too slow for the test to show anything", valid, float64(sent)/took, bound)
	}
	if locked < uint64(sent)/2 {
		t.Errorf("only %d of %d SYNs met the lockout: the source was not locked out, the test shows nothing", locked, sent)
	}
	if admitted > bound {
		t.Errorf("%d knocks admitted from a locked-out source, more than the budget allows (%d): its SYNs are looked up without bound", admitted, bound)
	}
	if admitted == 0 {
		t.Errorf("no knock admitted: a locked-out source got no lookup within the budget")
	}
}

// floodWithKnocks sends n SYNs at rate a second from src (the attacker's
// own address) to the server's port 22, each carrying, with probability
// fraction, the next of knocks (each sent at most once), and otherwise a
// random sequence number not in avoid. It returns how many SYNs and how
// many knocks it sent.
func (k *knockBed) floodWithKnocks(t *testing.T, src netip.Addr, n, rate int, knocks []uint32, fraction float64, avoid map[uint32]bool) (sent, valid int) {
	t.Helper()
	fd := -1
	if err := k.atk.Do(func() (err error) { fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW); return }); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tmpl := synTemplate(k.al.A4, 22)
	rng := rand.New(rand.NewPCG(13, 14))
	start := time.Now()
	for i := 0; i < n; i++ {
		if i%100 == 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				time.Sleep(d)
			}
		}
		seq := rng.Uint32()
		if valid < len(knocks) && rng.Float64() < fraction {
			seq = knocks[valid]
			valid++
		} else {
			for avoid[seq] || seq == 0 {
				seq = rng.Uint32()
			}
		}
		if err := sendRaw(fd, rewriteIPv4(tmpl, src, uint16(1024+rng.IntN(64000)), seq)); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	if valid == len(knocks) {
		t.Fatalf("all %d knocks sent: the fraction was not kept to the end", valid)
	}
	return n, valid
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
