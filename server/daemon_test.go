package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seqknock/seqknock/admitlog"
	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/nftgen"
)

// fakeKernel records applies; no root, no netlink.
type fakeKernel struct {
	mu       sync.Mutex
	applied  []nftgen.State
	torn     []string
	used     []nftgen.Element // what Spent returns
	failNext bool
}

func (f *fakeKernel) kernel() Kernel { return tableOnly(f) }

// tableOnly is a Kernel with t and nothing else: no admissions, no
// connections, no listeners.
func tableOnly(t Table) Kernel {
	return Kernel{Table: t, Feeds: quietFeeds{}, Sessions: noSessions{}, Listeners: NoListeners}
}

func (f *fakeKernel) Apply(s nftgen.State, now time.Time) (nftgen.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext {
		f.failNext = false
		return nftgen.Result{}, errors.New("kernel says no")
	}
	s.Valid, s.Knocks = s.ValidList(), nil // derive them, as Apply does
	f.applied = append(f.applied, s)
	return nftgen.Result{Elements: len(s.Valid)}, nil
}

// AddValid is never called: the table is not watched.
func (f *fakeKernel) AddValid(nftgen.State, time.Time) (nftgen.Result, error) {
	return nftgen.Result{}, fmt.Errorf("fake: %w", nftgen.ErrStale)
}
func (f *fakeKernel) Read(string) (*nftgen.Live, error) { return &nftgen.Live{Exists: true}, nil }
func (f *fakeKernel) ReadCounters(string) (*nftgen.Live, error) {
	return &nftgen.Live{Exists: true}, nil
}
func (f *fakeKernel) Teardown(t string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.torn = append(f.torn, t)
	return true, nil
}
func (f *fakeKernel) Watch(context.Context, string) (<-chan struct{}, error) { return nil, nil }
func (f *fakeKernel) Spent(string, time.Time) ([]nftgen.Element, error)      { return f.used, nil }

// quietFeeds are Feeds on which nothing ever arrives.
type quietFeeds struct{}

func (quietFeeds) Admissions(uint16) (AdmissionFeed, error) { return quietFeed{}, nil }
func (quietFeeds) ConntrackLost(context.Context) (<-chan struct{}, error) {
	return nil, nil
}

type quietFeed struct{}

func (quietFeed) Ready() <-chan struct{}               { return nil }
func (quietFeed) Drain() ([]admitlog.Admission, error) { return nil, nil }
func (quietFeed) Close() error                         { return nil }

// noSessions are the Sessions of a host with no connections.
type noSessions struct{}

func (noSessions) Established([]uint16) ([]nftgen.Session, error) { return nil, nil }
func (noSessions) ApplySessions(string, []nftgen.Session) error   { return nil }
func (noSessions) AddSessions(string, []nftgen.Session) error     { return nil }

func (f *fakeKernel) count() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.applied) }

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDaemonReload drives Run through its seams: the clock is fixed at the
// start of a 30 s period, so no rotation fires; reloads come from the
// channel. A bad config is logged and the old one kept.
func TestDaemonReload(t *testing.T) {
	fk := &fakeKernel{}
	configs := map[string]string{"v": goodConfig}
	var cfgMu sync.Mutex
	load := func(string) (*Config, error) {
		cfgMu.Lock()
		defer cfgMu.Unlock()
		return ParseConfig("/etc/seqknock/seqknockd.toml", []byte(configs["v"]), fakeKeys)
	}
	log := &netnstest.Buffer{}
	d := &Daemon{
		ConfigPath: "/etc/seqknock/seqknockd.toml",
		Load:       load,
		Kernel:     fk.kernel(),
		Now:        func() time.Time { return time.Unix(1_800_000_000, 0) }, // a boundary: 30 s to the next
		Log:        slog.New(slog.NewTextHandler(log, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	reload := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, reload) }()
	waitFor(t, "first sync", func() bool { return fk.count() == 1 })

	cfgMu.Lock()
	configs["v"] = strings.Replace(goodConfig, "port = 22\n", "port = 0\n", 1)
	cfgMu.Unlock()
	reload <- os.Interrupt
	waitFor(t, "failed reload log", func() bool { return strings.Contains(log.String(), "reload failed") })
	if fk.count() != 1 {
		t.Errorf("a bad reload synced: %d applies", fk.count())
	}
	if !strings.Contains(log.String(), "service[0].port: 0 out of range") {
		t.Errorf("log: %s", log.String())
	}

	cfgMu.Lock()
	configs["v"] = strings.Replace(goodConfig, `realm = "lab"`, `realm = "lab2"`, 1)
	cfgMu.Unlock()
	reload <- os.Interrupt
	waitFor(t, "reload sync", func() bool { return fk.count() == 2 })
	fk.mu.Lock()
	first, second := fk.applied[0], fk.applied[1]
	fk.mu.Unlock()
	if first.Valid[0].ISN == second.Valid[0].ISN {
		t.Error("the new realm did not change the knocks")
	}
	// A failing sync is logged and the daemon goes on.
	fk.mu.Lock()
	fk.failNext = true
	fk.mu.Unlock()
	reload <- os.Interrupt
	waitFor(t, "sync failure log", func() bool { return strings.Contains(log.String(), "sync failed") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(fk.torn) != 0 {
		t.Error("teardown without --teardown-on-exit")
	}
	if !strings.Contains(log.String(), "the table stays") {
		t.Errorf("exit not logged: %s", log.String())
	}
	for _, l := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		if !strings.HasPrefix(l, "time=") {
			t.Errorf("not one event a line: %q", l)
		}
	}
}

func TestDaemonTeardownOnExitAndStartFailure(t *testing.T) {
	fk := &fakeKernel{}
	d := &Daemon{
		Load:           func(string) (*Config, error) { return ParseConfig("x.toml", []byte(goodConfig), fakeKeys) },
		Kernel:         fk.kernel(),
		Now:            func() time.Time { return time.Unix(1_800_000_000, 0) },
		Log:            slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
		TeardownOnExit: true,
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if len(fk.torn) != 1 || fk.torn[0] != "seqknock" {
		t.Errorf("teardown on exit: %v", fk.torn)
	}
	// A config that does not load at start is an error: systemd restarts.
	d.Load = func(string) (*Config, error) { return nil, errors.New("config x.toml:1: bad") }
	if err := d.Run(context.Background(), nil); err == nil {
		t.Error("run started without a config")
	}
}

func TestUntilNextIsAligned(t *testing.T) {
	for _, tc := range []struct {
		now  time.Time
		want time.Duration
	}{
		{time.Unix(60, 0), 30 * time.Second},
		{time.Unix(89, 500_000_000), 500 * time.Millisecond},
		{time.Unix(75, 0), 15 * time.Second},
	} {
		d := &Daemon{cfg: &Config{Period: 30 * time.Second}, Now: func() time.Time { return tc.now }}
		if got := d.untilNext(); got != tc.want {
			t.Errorf("at %v: %v, want %v", tc.now, got, tc.want)
		}
	}
}

func TestLoggerUnderJournal(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "8:12345")
	r, w, _ := os.Pipe()
	log := NewLogger(w)
	log.Info("sync", "elements", 12)
	log.Warn("key expired")
	log.Error("sync failed", "err", "no table")
	w.Close()
	var b bytes.Buffer
	b.ReadFrom(r)
	want := "<6>level=INFO msg=sync elements=12\n<4>level=WARN msg=\"key expired\"\n<3>level=ERROR msg=\"sync failed\" err=\"no table\"\n"
	if b.String() != want {
		t.Errorf("journald lines:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestDaemonLock: Run takes its table's lock before it touches the table
// and fails at once without it; a reload that renames the table takes the
// new name's lock first, keeps the old config when it cannot, and releases
// the old name's when it can; the lock held is released when Run returns.
func TestDaemonLock(t *testing.T) {
	var mu sync.Mutex
	held := map[string]bool{"taken": true} // another daemon's
	lock := func(table string) (func(), error) {
		mu.Lock()
		defer mu.Unlock()
		if held[table] {
			return nil, errors.New("seqknockd run is already running for table inet " + table)
		}
		held[table] = true
		return func() { mu.Lock(); delete(held, table); mu.Unlock() }, nil
	}
	isHeld := func(table string) bool { mu.Lock(); defer mu.Unlock(); return held[table] }
	table := "seqknock"
	var cfgMu sync.Mutex
	load := func(string) (*Config, error) {
		cfgMu.Lock()
		defer cfgMu.Unlock()
		return ParseConfig("x.toml", []byte("table = \""+table+"\"\n"+goodConfig), fakeKeys)
	}
	setTable := func(s string) { cfgMu.Lock(); table = s; cfgMu.Unlock() }
	newDaemon := func(fk *fakeKernel, log *netnstest.Buffer) *Daemon {
		return &Daemon{Load: load, Kernel: fk.kernel(), Lock: lock, Log: slog.New(slog.NewTextHandler(log, nil)),
			Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
	}

	setTable("taken")
	fk := &fakeKernel{}
	if err := newDaemon(fk, &netnstest.Buffer{}).Run(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("run without the lock: %v", err)
	}
	if fk.count() != 0 {
		t.Errorf("run without the lock synced %d times", fk.count())
	}

	setTable("seqknock")
	fk = &fakeKernel{}
	log := &netnstest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	reload := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- newDaemon(fk, log).Run(ctx, reload) }()
	waitFor(t, "first sync", func() bool { return fk.count() == 1 })
	if !isHeld("seqknock") {
		t.Error("running without its lock")
	}
	setTable("taken")
	reload <- os.Interrupt
	waitFor(t, "refused reload", func() bool { return strings.Contains(log.String(), "reload failed") })
	if fk.count() != 1 || !isHeld("seqknock") {
		t.Errorf("a reload to a table locked by another synced (%d applies) or dropped the lock", fk.count())
	}
	setTable("renamed")
	reload <- os.Interrupt
	waitFor(t, "renamed reload", func() bool { return fk.count() == 2 })
	if !isHeld("renamed") || isHeld("seqknock") {
		t.Error("after the rename: the new lock not held or the old one kept")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if isHeld("renamed") {
		t.Error("lock kept after Run returned")
	}
}
