package server

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeListeners is a host's listeners per port, and what locking each
// inode does, for the lock logic without a kernel.
type fakeListeners struct {
	ports map[uint16][]ListenerState
	fail  map[uint32]error // inode: why it cannot be locked
	// pending: inodes whose holder is still being searched for
	pending map[uint32]bool
	locked  map[uint32]uint32
	calls   map[uint32]int // LockListener calls with attach, per inode
	reads   int            // LockListener calls without attach
}

func (f *fakeListeners) kernel() Kernel { return Kernel{Listeners: f} }

func (f *fakeListeners) List(port uint16, key []byte) ([]ListenerState, error) {
	return f.ports[port], nil
}

func (f *fakeListeners) Lock(ls []ListenerState, bit uint32, attach bool) []LockResult {
	out := make([]LockResult, len(ls))
	for i, l := range ls {
		out[i] = f.lock(l.Inode, bit, attach)
	}
	return out
}

func (f *fakeListeners) lock(inode, bit uint32, attach bool) LockResult {
	if !attach {
		f.reads++
		return LockResult{Locked: f.locked[inode] == bit}
	}
	f.calls[inode]++
	if f.pending[inode] {
		return LockResult{Pending: true, Err: errors.New("holder not found yet")}
	}
	if err := f.fail[inode]; err != nil {
		return LockResult{Err: err}
	}
	changed := f.locked[inode] != bit
	f.locked[inode] = bit
	return LockResult{PID: 100, Locked: true, Changed: changed}
}

func (f *fakeListeners) Unlock(inode uint32) (bool, error) {
	_, ok := f.locked[inode]
	delete(f.locked, inode)
	return ok, nil
}

// Sign is never called: lockConfig signs no service.
func (f *fakeListeners) Sign(uint16, []byte) ([]ListenerState, error) {
	return nil, errors.New("fake: not signing")
}
func (f *fakeListeners) OtherNetns(uint16) ([]string, error) { return nil, nil }

func newFakeListeners() *fakeListeners {
	ap := netip.MustParseAddrPort
	return &fakeListeners{
		ports: map[uint16][]ListenerState{
			22:   {{Local: ap("0.0.0.0:22"), Inode: 1}, {Local: ap("[::]:22"), Inode: 2}},
			2222: {{Local: ap("0.0.0.0:2222"), Inode: 3}},
		},
		fail:    map[uint32]error{},
		pending: map[uint32]bool{},
		locked:  map[uint32]uint32{},
		calls:   map[uint32]int{},
	}
}

func lockConfig(t *testing.T) *Config {
	t.Helper()
	cfg, err := ParseConfig("x.toml", []byte("packet_mark_bit = 5\n[[service]]\nport = 22\n[[service]]\nport = 2222\n[[service]]\nport = 8022\n\n[[user]]\nname = \"a\"\nkey_file = \"k\"\n"), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestLockListeners: the daemon locks every listener of every protected
// port with the config's bit; the fast poll touches only new listeners, a
// full check every one; a listener it cannot lock is a warning logged
// once per reason and counted in the metrics; a listener gone is
// forgotten.
func TestLockListeners(t *testing.T) {
	f := newFakeListeners()
	f.fail[3] = errors.New("no pidfd access")
	var log bytes.Buffer
	m := &Metrics{}
	cfg := lockConfig(t)
	d := &locker{k: f, log: slog.New(slog.NewTextHandler(&log, nil)), metrics: m}
	now := time.Unix(0, 0)
	d.lock(cfg, true, now)
	if f.locked[1] != 1<<5 || f.locked[2] != 1<<5 {
		t.Fatalf("locked %v; want inodes 1 and 2 with bit 5", f.locked)
	}
	d.lock(cfg, false, now)
	if f.calls[1] != 1 || f.calls[3] != 1 {
		t.Errorf("the fast poll touched known listeners: %v", f.calls)
	}
	d.lock(cfg, true, now)
	if f.calls[1] != 2 || f.calls[3] != 2 {
		t.Errorf("a full check skipped listeners: %v", f.calls)
	}
	if n := strings.Count(log.String(), "listener not locked"); n != 1 {
		t.Errorf("%d warnings for the unlockable listener; want 1:\n%s", n, log.String())
	}
	if n := strings.Count(log.String(), "listener locked"); n != 2 {
		t.Errorf("%d lock lines; want 2 (once each):\n%s", n, log.String())
	}
	var out bytes.Buffer
	m.Write(&out, time.Unix(0, 0))
	for _, want := range []string{`seqknock_listeners_locked{port="22"} 2`, `seqknock_listeners_locked{port="2222"} 0`,
		`seqknock_listeners_unlocked{port="22"} 0`, `seqknock_listeners_unlocked{port="2222"} 1`} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, out.String())
		}
	}
	// The service restarted: a new listener on 22, the old ones gone.
	f.ports[22] = []ListenerState{{Local: netip.MustParseAddrPort("0.0.0.0:22"), Inode: 4}}
	d.lock(cfg, false, now)
	if f.locked[4] != 1<<5 {
		t.Errorf("the fast poll did not lock the new listener")
	}
	if _, ok := d.locks[1]; ok {
		t.Errorf("a listener gone is still tracked")
	}
	// Someone removed the filter: the next full check puts it back.
	delete(f.locked, 4)
	d.lock(cfg, true, now)
	if f.locked[4] != 1<<5 {
		t.Errorf("a full check did not put a removed filter back")
	}
	// A new listener whose holder is still being searched for: the fast
	// poll asks again each time, without a warning, until it is locked.
	f.ports[2222] = append(f.ports[2222], ListenerState{Local: netip.MustParseAddrPort("[::]:2222"), Inode: 5})
	f.pending[5] = true
	before := strings.Count(log.String(), "listener not locked")
	d.lock(cfg, false, now)
	d.lock(cfg, false, now)
	if f.calls[5] != 2 || f.calls[3] != 3 {
		t.Errorf("the fast poll: calls %v; want the pending listener asked twice, the failed one not", f.calls)
	}
	delete(f.pending, 5)
	d.lock(cfg, false, now)
	if f.locked[5] != 1<<5 || strings.Count(log.String(), "listener not locked") != before {
		t.Errorf("pending listener: locked %v, log:\n%s", f.locked, log.String())
	}
	f.ports[2222] = f.ports[2222][:1]
	if n := LockOnce(f.kernel(), cfg, d.log); n != 1 {
		t.Errorf("LockOnce: %d unlocked; want 1", n)
	}
}

// TestLockedListenersStatus: status lists each listener with whether it
// is locked and why not, and a port without one; an unlocked listener is
// a difference, a port without a listener is not. It only reads.
func TestLockedListenersStatus(t *testing.T) {
	f := newFakeListeners()
	f.locked[1] = 1 << 5
	f.locked[2] = 1 << 6 // an older bit
	cfg := lockConfig(t)
	ls, err := LockedListeners(f.kernel(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(ls)
	want := "[{22 0.0.0.0:22 true } {22 [::]:22 false no filter on it yet (seqknockd locks it at its next check)} " +
		"{2222 0.0.0.0:2222 false no filter on it yet (seqknockd locks it at its next check)} {8022  false " + NoListener + "}]"
	if got != want {
		t.Errorf("listeners:\n got %s\nwant %s", got, want)
	}
	diff := lockDifferences(ls)
	if len(diff) != 2 || !strings.HasPrefix(diff[0], "port 22 listener [::]:22 is not locked") {
		t.Errorf("differences %q", diff)
	}
	if len(f.calls) != 0 {
		t.Errorf("status attached filters: %v", f.calls)
	}
}

// stuckListeners has one listener on each port; from its second call on,
// Lock reports on entered and waits for gate, as a search of /proc that
// takes long does.
type stuckListeners struct {
	mu      sync.Mutex
	calls   int
	entered chan struct{}
	gate    chan struct{}
}

func (s *stuckListeners) List(port uint16, _ []byte) ([]ListenerState, error) {
	return []ListenerState{{Local: netip.AddrPortFrom(netip.IPv4Unspecified(), port), Inode: uint32(port)}}, nil
}

func (s *stuckListeners) Lock(ls []ListenerState, _ uint32, _ bool) []LockResult {
	s.mu.Lock()
	s.calls++
	stuck := s.calls > 1
	s.mu.Unlock()
	if stuck {
		select {
		case s.entered <- struct{}{}:
		default:
		}
		<-s.gate
	}
	out := make([]LockResult, len(ls))
	for i := range out {
		out[i] = LockResult{Locked: true}
	}
	return out
}

func (s *stuckListeners) Sign(uint16, []byte) ([]ListenerState, error) { return nil, nil }
func (s *stuckListeners) Unlock(uint32) (bool, error)                  { return false, nil }
func (s *stuckListeners) OtherNetns(uint16) ([]string, error)          { return nil, nil }

// TestLockNeverHoldsUpRepair: while the lock work is stuck (a long search
// for a listener's holder), a foreign change to the table is still
// repaired at once: the loop that repairs never waits for the locker.
func TestLockNeverHoldsUpRepair(t *testing.T) {
	clock := newFakeClock(time.Unix(1_800_000_000, 0).Add(time.Second))
	events := make(chan struct{}, 1)
	sk := &scriptedKernel{clock: clock, foreign: events}
	sl := &stuckListeners{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	k := sk.kernel()
	k.Listeners = sl
	_, stop := startDaemon(t, clock, k, &notes{}, 0, "60s")
	defer stop()
	defer close(sl.gate) // before stop: the locker ends after its call
	waitFor(t, "first sync", func() bool { return sk.count() >= 1 })
	events <- struct{}{} // someone removed the table
	waitFor(t, "the first repair", func() bool { return sk.count() >= 2 })
	select {
	case <-sl.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the lock work never started")
	}
	n := sk.count()
	events <- struct{}{} // and again, while the lock work is stuck
	waitFor(t, "the repair while the lock work is stuck", func() bool { return sk.count() == n+1 })
}
