//go:build linux

package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
	"golang.org/x/sys/unix"
)

// knockBed is a server namespace with a plain listener on port 22 behind
// `seqknockd run`, a client namespace whose in-process dialer knocks, and
// an attacker namespace that sends raw SYNs. It is lighter than world (no
// sshd), for floods and timings.
type knockBed struct {
	srv, cli, atk *netnstest.NS
	cl, al        *netnstest.Link
	bin, dir      string
	key           []byte
	dialer        *client.Dialer
	period        time.Duration
	daemon        *daemonProc
	// The dialer's last knock, for explain.
	last    atomic.Value // string
	lastISN atomic.Value // uint32
}

// daemonProc is a running seqknockd and its log file.
type daemonProc struct {
	stop func()
	log  string
}

const bedPeriod = 10 * time.Second

func newKnockBed(tb testing.TB, subnet int) *knockBed {
	tb.Helper()
	netnstest.RequireRoot(tb)
	k := &knockBed{period: bedPeriod, key: []byte("guess-bed-key-0123456789abcdefgh")}
	k.bin = netnstest.Build(tb, "server/cmd/seqknockd")
	k.srv, k.cli, k.atk = netnstest.New(tb, "gsrv"), netnstest.New(tb, "gcli"), netnstest.New(tb, "gatk")
	k.cl = netnstest.Connect(tb, k.srv, k.cli, subnet)
	k.al = netnstest.Connect(tb, k.srv, k.atk, subnet+1)
	for _, i := range []string{"all", "default", k.al.AIf} {
		k.srv.Run("sysctl", "-qw", "net.ipv4.conf."+i+".rp_filter=0")
	}
	var ln net.Listener
	if err := k.srv.Do(func() (err error) { ln, err = net.Listen("tcp", ":22"); return }); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	k.dir = tb.TempDir()
	os.WriteFile(filepath.Join(k.dir, "k.key"), []byte(base64.StdEncoding.EncodeToString(k.key)+"\n"), 0o600)
	k.dialer = benchDialer(k.key, k.period, k.cl.A4)
	k.dialer.OnAttempt = func(ap netip.AddrPort, counter uint64, slot int, isn uint32) {
		k.last.Store(fmt.Sprintf("%s counter %d slot %d ISN %d at %s", ap, counter, slot, isn, time.Now().Format("15:04:05.000")))
		k.lastISN.Store(isn)
	}
	return k
}

// benchDialer is an in-process dialer to addr's port 22 for benchmarks:
// 256 slots a period, handed out in order (a fresh period starts at 0),
// without a state file.
func benchDialer(key []byte, period time.Duration, addr string) *client.Dialer {
	var mu sync.Mutex
	var last uint64
	next := 0
	reserve := func(_ string, counter uint64, slots int) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if counter != last {
			last, next = counter, 0
		}
		if next >= slots {
			return 0, client.ErrSlotsSpent
		}
		next++
		return next - 1, nil
	}
	return &client.Dialer{Key: key, Slots: 256, Period: period, SynTimeout: time.Second, Reserve: reserve,
		Resolve: func(context.Context, string, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr(addr)}, nil
		}}
}

// start runs `seqknockd run` with extra config lines (before the
// service), port 22 in mode, and waits for its first sync.
func (k *knockBed) start(tb testing.TB, mode, extra string) {
	tb.Helper()
	cfg := filepath.Join(k.dir, "seqknockd.toml")
	text := fmt.Sprintf("period = %q\nslots = 256\n%s\n[[service]]\nport = 22\nunknocked = %q\n[[user]]\nname = \"u\"\nkey_file = \"k.key\"\n", k.period, extra, mode)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	logFile, err := os.CreateTemp(k.dir, "log")
	if err != nil {
		tb.Fatal(err)
	}
	cmd := k.srv.Command(k.bin, "--config", cfg, "run", "--teardown-on-exit")
	// The log goes to a file, as to journald: no goroutine of this
	// process copies it while dials are timed.
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	stopped := false
	k.daemon = &daemonProc{log: logFile.Name(), stop: func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(unix.SIGTERM)
			cmd.Wait()
			logFile.Close()
		}
	}}
	tb.Cleanup(k.daemon.stop)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(k.log(), "msg=sync") {
		if time.Now().After(deadline) {
			tb.Fatalf("no sync:\n%s", k.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (k *knockBed) log() string { b, _ := os.ReadFile(k.daemon.log); return string(b) }

// dial knocks and connects from the client namespace; it returns the time
// to the established connection.
func (k *knockBed) dial() (time.Duration, error) {
	var conn *net.TCPConn
	start := time.Now()
	err := k.cli.Do(func() (err error) { conn, err = k.dialer.Dial(context.Background(), k.cl.A4, 22); return })
	took := time.Since(start)
	if err == nil {
		conn.Close()
	}
	return took, err
}

// explain says what the server saw of the bed dialer's last knock: its
// counter, slot and ISN, whether the ISN is in the valid and used sets, the
// conntrack entries of the client's address, and the end of the log.
func (k *knockBed) explain(tb testing.TB) string {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "last knock: %s\n", k.last.Load())
	if isn, ok := k.lastISN.Load().(uint32); ok {
		for _, set := range []string{"valid", "used"} {
			out, _ := k.srv.Run("nft", "list", "set", "inet", "seqknock", set)
			fmt.Fprintf(&b, "in %s: %v\n", set, strings.Contains(out, fmt.Sprintf("22 . %d", isn)))
		}
	}
	out, _ := k.srv.Run("conntrack", "-L", "-s", k.cl.B4)
	fmt.Fprintf(&b, "conntrack from %s:\n%s", k.cl.B4, out)
	l := k.live(tb)
	fmt.Fprintf(&b, "admitted %d, reset %d\n", l.Admitted.Packets, l.Rejected.Packets)
	log := k.log()
	fmt.Fprintf(&b, "log:\n%s", log[max(0, len(log)-2000):])
	return b.String()
}

// live reads the table's counters.
func (k *knockBed) live(tb testing.TB) *nftgen.Live {
	tb.Helper()
	c := &nftgen.Conn{NetNS: k.srv.FD()}
	l, err := c.ReadCounters("seqknock")
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// validISNs are the knocks of the bed's key valid around now (every slot,
// two periods back to four ahead), which random floods leave out so a
// test cannot pass or fail by chance.
func (k *knockBed) validISNs() map[uint32]bool {
	d, _ := totp.NewDeriver(k.key, "")
	now := time.Now()
	valid := map[uint32]bool{0: true}
	for c := totp.Counter(now, k.period) - 2; c <= totp.Counter(now, k.period)+4; c++ {
		for s := 0; s < 256; s++ {
			valid[d.ISN(22, c, uint8(s))] = true
		}
	}
	return valid
}

// flood sends n SYNs with random sequence numbers and source ports to the
// server's port 22 from the attacker, at rate a second (0: as fast as it
// can), from sources (one address per source, all in the attacker link's
// subnet; the server drops without answering, so they need not exist).
// It stops early when ctx ends and returns how many it sent.
func (k *knockBed) flood(ctx context.Context, tb testing.TB, n, rate, sources int, seed uint64) int {
	srcs := make([]netip.Addr, sources)
	base := netip.MustParseAddr(k.al.B4).As4()
	for i := range srcs {
		a := base
		if sources > 1 {
			a[2], a[3] = byte(200+i/250), byte(1+i%250) // 198.18.(200..).x: other /24s than the links'
		}
		srcs[i] = netip.AddrFrom4(a)
	}
	return k.floodTo(ctx, tb, 22, srcs, n, rate, seed)
}

// floodTo sends n SYNs with random sequence numbers (none valid) and
// source ports from the attacker namespace to the server's port, from the
// addresses srcs in turn (spoofed where they are not the attacker's), at
// rate a second (0: as fast as it can). It stops early when ctx ends and
// returns how many it sent.
func (k *knockBed) floodTo(ctx context.Context, tb testing.TB, port uint16, srcs []netip.Addr, n, rate int, seed uint64) int {
	fd := -1
	if err := k.atk.Do(func() (err error) { fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW); return }); err != nil {
		tb.Error(err)
		return 0
	}
	defer unix.Close(fd)
	// The knocks valid around now, renewed at every period boundary: a
	// flood that outlives the first window must not send a knock that is
	// valid by then, which the server would admit (and which, if it is
	// one the client is about to use, spends it: the client's knock then
	// gets a reset).
	valid, counter := k.validISNs(), totp.Counter(time.Now(), k.period)
	tmpl := synTemplate(k.al.A4, port)
	rng := rand.New(rand.NewPCG(seed, seed+1))
	start := time.Now()
	for i := 0; i < n; i++ {
		if i%100 == 0 {
			if ctx.Err() != nil {
				return i
			}
			if c := totp.Counter(time.Now(), k.period); c != counter {
				valid, counter = k.validISNs(), c
			}
		}
		if rate > 0 && (i%100 == 0 || rate < 1000) {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				time.Sleep(d)
			}
		}
		seq := rng.Uint32()
		for valid[seq] {
			seq = rng.Uint32()
		}
		p := rewriteIPv4(tmpl, srcs[i%len(srcs)], uint16(1024+rng.IntN(64000)), seq)
		if err := sendRaw(fd, p); err != nil {
			tb.Errorf("packet %d: %v", i, err)
			return i
		}
	}
	return n
}

// TestGuessLimitFlood: a source floods random-ISN SYNs at 10,000 a second
// for 4 s with the default limits. The kernel locks it out: the lockout
// rules' counters hold nearly all of the flood, and only about what the
// limit allows (10 a second plus the burst) got past the lockout to the
// unknocked rules (counter, drop log). A second source's knocks work all
// the while.
func TestGuessLimitFlood(t *testing.T) {
	t.Parallel()
	k := newKnockBed(t, 186)
	k.start(t, "drop", "")
	before := k.live(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const dur = 4 * time.Second
	sent := make(chan int, 1)
	go func() { sent <- k.flood(ctx, t, int(dur.Seconds())*10_000, 10_000, 1, 7) }()
	time.Sleep(500 * time.Millisecond)
	mid := k.live(t)
	for i := 0; i < 5; i++ {
		took, err := k.dial()
		if err != nil {
			t.Fatalf("knock %d during the flood: %v", i, err)
		}
		t.Logf("knock %d during the flood: %v", i, took.Round(time.Microsecond))
		time.Sleep(300 * time.Millisecond)
	}
	n := <-sent
	after := k.live(t)
	guesses := after.Unknocked[22].Packets - before.Unknocked[22].Packets
	locked := after.Lockout.Packets - before.Lockout.Packets
	admitted := after.Admitted.Packets - before.Admitted.Packets
	t.Logf("sent %d in %v: %d locked out, %d got past the lockout, %d admitted; %d source(s) locked out mid-flood",
		n, dur, locked, guesses, admitted, mid.LockedOut)
	if mid.LockedOut != 1 {
		t.Errorf("%d sources locked out during the flood, want 1", mid.LockedOut)
	}
	// 10 a second for 4 s, the burst of 20, the bucket's own 10, and a
	// second's worth of slack for the lockout's timer granularity.
	if max := uint64(4*10 + 20 + 10 + 10); guesses > max {
		t.Errorf("%d guesses got past the lockout, want at most %d", guesses, max)
	}
	if locked+guesses < uint64(n) {
		t.Errorf("%d locked out + %d guesses < %d sent: the flood did not reach the rules", locked, guesses, n)
	}
	if admitted != 5 {
		t.Errorf("%d admitted, want the 5 knocks", admitted)
	}
}

// TestGuessGlobalCap: 500 sources, each under its own limit (8 SYNs a
// second), 4,000 a second together, over the global cap of 1,000: sources
// are locked out, and the client's knocks still work, since a knock is
// looked up before the cap.
func TestGuessGlobalCap(t *testing.T) {
	t.Parallel()
	k := newKnockBed(t, 188)
	k.start(t, "drop", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := make(chan int, 1)
	go func() { sent <- k.flood(ctx, t, 12_000, 4_000, 500, 9) }()
	time.Sleep(time.Second)
	mid := k.live(t)
	for i := 0; i < 5; i++ {
		if _, err := k.dial(); err != nil {
			t.Fatalf("knock %d during the distributed flood: %v", i, err)
		}
	}
	n := <-sent
	after := k.live(t)
	t.Logf("sent %d from 500 sources: %d locked out mid-flood, %d SYNs dropped by lockouts, %d reached the lookup",
		n, mid.LockedOut, after.Lockout.Packets, after.Unknocked[22].Packets)
	if mid.LockedOut < 50 || after.Lockout.Packets == 0 {
		t.Errorf("the global cap locked out %d sources and dropped %d SYNs", mid.LockedOut, after.Lockout.Packets)
	}
	if after.Admitted.Packets != 5 {
		t.Errorf("%d admitted, want the 5 knocks", after.Admitted.Packets)
	}
}

// TestMillionRandomSYNs: 10^6 SYNs with random sequence numbers and source
// ports, the limits off (the kernel's lookup alone stands), in each mode:
// none is admitted or answered with a SYN-ACK, while a client's knocks
// keep working.
func TestMillionRandomSYNs(t *testing.T) {
	for _, c := range []struct {
		mode   string
		subnet int
	}{{"drop", 190}, {"reset", 192}} {
		t.Run(c.mode, func(t *testing.T) {
			k := newKnockBed(t, c.subnet)
			k.start(t, c.mode, "guess_limit = \"0\"\nguess_global_limit = \"0\"")
			capt := startCapture(t, k.atk, k.al.BIf, nil, "tcp src port 22 and tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			const n = 1_000_000
			sent := make(chan int, 1)
			start := time.Now()
			go func() { sent <- k.flood(ctx, t, n, 0, 1, 11) }()
			knocks := 0
			var got int
		loop:
			for {
				select {
				case got = <-sent:
					break loop
				case <-time.After(200 * time.Millisecond):
					if _, err := k.dial(); err != nil {
						t.Fatalf("knock %d during the flood: %v\n%s", knocks, err, k.explain(t))
					}
					knocks++
				}
			}
			took := time.Since(start)
			if lines := capt.stop(); len(lines) != 0 {
				t.Fatalf("the server answered the flood with a SYN-ACK %d times: %q", len(lines), lines[:min(5, len(lines))])
			}
			l := k.live(t)
			t.Logf("%s mode: %d SYNs in %v (%.0f/s), %d unknocked, %d reset, %d admitted (%d knocks)",
				c.mode, got, took.Round(time.Millisecond), float64(got)/took.Seconds(), l.Unknocked[22].Packets, l.Rejected.Packets, l.Admitted.Packets, knocks)
			if got != n || l.Unknocked[22].Packets < n {
				t.Errorf("sent %d, %d counted unknocked: the flood did not reach the rules", got, l.Unknocked[22].Packets)
			}
			if l.Admitted.Packets != uint64(knocks) || knocks == 0 {
				t.Errorf("%d admitted, want the %d knocks", l.Admitted.Packets, knocks)
			}
			if c.mode == "reset" && l.Rejected.Packets < n {
				t.Errorf("%d answered with a reset, want %d", l.Rejected.Packets, n)
			}
		})
	}
}

// medianDial returns the median time to an established connection over
// dials knocks, from the start of a fresh period (the slots restart).
func (k *knockBed) medianDial(tb testing.TB, dials int) time.Duration {
	now := time.Now()
	time.Sleep(totp.NextBoundary(now, k.period).Sub(now) + 200*time.Millisecond)
	times := make([]time.Duration, 0, dials)
	for i := 0; i < dials; i++ {
		took, err := k.dial()
		if err != nil {
			tb.Fatalf("dial %d: %v\n%s", i, err, k.log())
		}
		times = append(times, took)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times[len(times)/2]
}
