package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/nftgen"
)

// fakeClock is a wall clock and timer source the test moves by hand.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	armed  int // After calls so far: the daemon armed a timer, so it is waiting
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed++
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{c.now.Add(d), ch})
	return ch
}

// Advance lets d pass and fires the timers due.
func (c *fakeClock) Advance(d time.Duration) { c.advance(d) }

// advance is Advance that also tells how many timers fired.
func (c *fakeClock) advance(d time.Duration) int {
	c.mu.Lock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	var due []fakeTimer
	for _, tm := range c.timers {
		if !tm.at.After(c.now) {
			due = append(due, tm)
		} else {
			kept = append(kept, tm)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, tm := range due {
		tm.ch <- tm.at
	}
	return len(due)
}

func (c *fakeClock) armedCount() int { c.mu.Lock(); defer c.mu.Unlock(); return c.armed }

// Step moves the wall clock by d without any time passing: timers keep
// their remaining durations.
func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for i := range c.timers {
		c.timers[i].at = c.timers[i].at.Add(d)
	}
}

// run advances the clock by total in steps of step, giving the daemon's
// goroutine a moment after each step. After a step that fired a timer it
// waits (up to 100 ms of real time) until the daemon has armed its next
// one, so on a loaded machine the clock does not run ahead of a daemon
// that has not yet acted on the firing (and read the clock).
func (c *fakeClock) run(total, step time.Duration) {
	for e := time.Duration(0); e < total; e += step {
		before := c.armedCount()
		fired := c.advance(step)
		time.Sleep(200 * time.Microsecond)
		if fired == 0 {
			continue
		}
		for deadline := time.Now().Add(100 * time.Millisecond); c.armedCount() == before && time.Now().Before(deadline); {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

type scriptedKernel struct {
	mu      sync.Mutex
	clock   *fakeClock
	fail    bool
	block   chan struct{} // non-nil: Apply waits on it
	foreign chan struct{} // what Watch returns: nil, the table is not watched
	applies []time.Time
	states  []nftgen.State
	added   []nftgen.State // by AddValid
}

func (k *scriptedKernel) kernel() Kernel { return tableOnly(k) }

func (k *scriptedKernel) Apply(s nftgen.State, now time.Time) (nftgen.Result, error) {
	k.mu.Lock()
	block := k.block
	k.mu.Unlock()
	if block != nil {
		<-block
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.applies = append(k.applies, k.clock.Now())
	s.Valid, s.Knocks = s.ValidList(), nil // derive them, as Apply does
	k.states = append(k.states, s)
	if k.fail {
		return nftgen.Result{}, errors.New("kernel says no")
	}
	return nftgen.Result{}, nil
}

func (k *scriptedKernel) AddValid(s nftgen.State, now time.Time) (nftgen.Result, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s.Valid, s.Knocks = s.ValidList(), nil
	k.added = append(k.added, s)
	return nftgen.Result{Elements: len(s.Valid)}, nil
}

func (k *scriptedKernel) Read(string) (*nftgen.Live, error) { return &nftgen.Live{Exists: true}, nil }
func (k *scriptedKernel) ReadCounters(string) (*nftgen.Live, error) {
	return &nftgen.Live{Exists: true}, nil
}
func (k *scriptedKernel) Teardown(string) (bool, error) { return true, nil }
func (k *scriptedKernel) Watch(context.Context, string) (<-chan struct{}, error) {
	return k.foreign, nil
}
func (k *scriptedKernel) Spent(string, time.Time) ([]nftgen.Element, error) { return nil, nil }

func (k *scriptedKernel) set(fn func()) { k.mu.Lock(); fn(); k.mu.Unlock() }

func (k *scriptedKernel) count() int { k.mu.Lock(); defer k.mu.Unlock(); return len(k.applies) }

type notes struct {
	mu sync.Mutex
	l  []string
}

func (n *notes) notify(s string) error { n.mu.Lock(); n.l = append(n.l, s); n.mu.Unlock(); return nil }
func (n *notes) count(s string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, x := range n.l {
		if x == s {
			c++
		}
	}
	return c
}

func startDaemon(t *testing.T, clock *fakeClock, k Kernel, n *notes, watchdog time.Duration, period string) (*netnstest.Buffer, func()) {
	t.Helper()
	log := &netnstest.Buffer{}
	d := &Daemon{
		Load: func(string) (*Config, error) {
			return ParseConfig("x.toml", []byte(strings.Replace(goodConfig, `period = "2s"`, `period = "`+period+`"`, 1)), fakeKeys)
		},
		Kernel:   k,
		Now:      clock.Now,
		After:    clock.After,
		Log:      slog.New(slog.NewTextHandler(log, nil)),
		Notify:   n.notify,
		Watchdog: watchdog,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, make(chan os.Signal)) }()
	return log, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

// TestDaemonBackoff: a failed sync is retried at once, then after 20 ms,
// doubling up to 1 s, one log line each; the recovery is one line; READY comes only after
// the first good sync.
func TestDaemonBackoff(t *testing.T) {
	clock := newFakeClock(time.Unix(1_800_000_000, 0).Add(time.Second))
	sk := &scriptedKernel{clock: clock, fail: true}
	n := &notes{}
	log, stop := startDaemon(t, clock, sk.kernel(), n, 0, "60s")
	defer stop()
	waitFor(t, "first sync and its immediate retry", func() bool { return sk.count() == 2 })
	clock.run(6*time.Second, 10*time.Millisecond)
	sk.mu.Lock()
	var gaps []time.Duration
	for i := 1; i < len(sk.applies); i++ {
		gaps = append(gaps, sk.applies[i].Sub(sk.applies[i-1]))
	}
	sk.mu.Unlock()
	ms := time.Millisecond
	want := []time.Duration{0, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, 1000 * ms, 1000 * ms, 1000 * ms}
	if len(gaps) < len(want) {
		t.Fatalf("retries at gaps %v, want %v ms", gaps, want)
	}
	for i, w := range want {
		if d := gaps[i] - w; d < 0 || d > 20*time.Millisecond {
			t.Errorf("retry %d after %v, want %v", i+1, gaps[i], w)
		}
	}
	if n.count("READY=1") != 0 {
		t.Error("READY before any good sync")
	}
	if got := strings.Count(log.String(), "sync failed"); got != len(gaps)+1 {
		t.Errorf("%d failure lines for %d failures", got, len(gaps)+1)
	}
	sk.set(func() { sk.fail = false })
	clock.run(6*time.Second, 10*time.Millisecond)
	waitFor(t, "recovery", func() bool { return strings.Contains(log.String(), "sync recovered") })
	if strings.Count(log.String(), "sync recovered") != 1 || n.count("READY=1") != 1 {
		t.Errorf("recovery: %d lines, %d READY", strings.Count(log.String(), "sync recovered"), n.count("READY=1"))
	}
}

// TestDaemonWatchdog: the loop pings at half the watchdog timeout while it
// is healthy; a loop stuck in a kernel call, or failing for longer than the
// timeout, stops pinging, so systemd restarts it.
func TestDaemonWatchdog(t *testing.T) {
	clock := newFakeClock(time.Unix(1_800_000_000, 0).Add(time.Second))
	sk := &scriptedKernel{clock: clock}
	n := &notes{}
	_, stop := startDaemon(t, clock, sk.kernel(), n, 4*time.Second, "30s")
	defer stop()
	waitFor(t, "ready", func() bool { return n.count("READY=1") == 1 })
	clock.run(10*time.Second, 50*time.Millisecond)
	if p := n.count("WATCHDOG=1"); p < 4 || p > 6 {
		t.Fatalf("%d pings in 10 s at a 4 s watchdog, want 5", p)
	}
	// Stuck: the next rotation's Apply never returns.
	block := make(chan struct{})
	sk.set(func() { sk.block = block })
	clock.run(30*time.Second, 50*time.Millisecond)
	before := n.count("WATCHDOG=1")
	clock.run(20*time.Second, 50*time.Millisecond)
	if after := n.count("WATCHDOG=1"); after != before {
		t.Errorf("a stuck loop pinged %d times", after-before)
	}
	// Unstuck, then failing: pings go on for one timeout, then stop.
	sk.set(func() { sk.block, sk.fail = nil, true })
	close(block)
	clock.run(2*time.Second, 10*time.Millisecond)
	if n.count("WATCHDOG=1") == before {
		t.Error("no ping once unstuck")
	}
	clock.run(5*time.Second, 10*time.Millisecond)
	before = n.count("WATCHDOG=1")
	clock.run(20*time.Second, 10*time.Millisecond)
	if after := n.count("WATCHDOG=1"); after != before {
		t.Errorf("a loop failing for 25 s pinged %d times", after-before)
	}
}

// TestDaemonClockBack: a clock stepped back never brings an older window
// back; the daemon warns once and goes on from its highest time.
func TestDaemonClockBack(t *testing.T) {
	start := time.Unix(1_800_000_000, 0).Add(time.Second)
	clock := newFakeClock(start)
	sk := &scriptedKernel{clock: clock}
	log, stop := startDaemon(t, clock, sk.kernel(), &notes{}, 0, "30s")
	defer stop()
	waitFor(t, "first sync", func() bool { return sk.count() == 1 })
	clock.run(60*time.Second, 100*time.Millisecond)
	clock.Step(-95 * time.Second) // three periods and more back
	clock.run(120*time.Second, 100*time.Millisecond)
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if len(sk.states) < 6 {
		t.Fatalf("%d syncs in 180 s", len(sk.states))
	}
	// The latest expiry in each state is that of the newest counter of its
	// window: it never goes back.
	var prev time.Time
	for i, s := range sk.states {
		var hi time.Time
		for _, e := range s.Valid {
			if e.Expires.After(hi) {
				hi = e.Expires
			}
		}
		if hi.Before(prev) {
			t.Errorf("sync %d installed a window ending %v, before the previous %v", i, hi, prev)
		}
		prev = hi
	}
	if c := strings.Count(log.String(), "the clock went back"); c != 1 {
		t.Errorf("%d clock warnings, want 1:\n%s", c, log.String())
	}
}

// TestDaemonRepairsDuringBackoff: a foreign change to the table (a
// removal) while a failed sync waits for its retry is repaired at once,
// not at the retry.
func TestDaemonRepairsDuringBackoff(t *testing.T) {
	clock := newFakeClock(time.Unix(1_800_000_000, 0).Add(time.Second))
	events := make(chan struct{}, 1)
	sk := &scriptedKernel{clock: clock, fail: true, foreign: events}
	_, stop := startDaemon(t, clock, sk.kernel(), &notes{}, 0, "60s")
	defer stop()
	waitFor(t, "first sync", func() bool { return sk.count() >= 1 })
	// Into the backoff: the next retry is 20, then 40 ms away, and more.
	clock.run(500*time.Millisecond, 10*time.Millisecond)
	n := sk.count()
	sk.set(func() { sk.fail = false })
	events <- struct{}{} // someone removed the table
	waitFor(t, "the repair, with no time passing", func() bool { return sk.count() == n+1 })
}
