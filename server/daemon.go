package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/seqknock/seqknock/admitlog"
	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

// SessionsDelay is how long after conntrack lost entries the sessions
// sets are refreshed.
const SessionsDelay = 100 * time.Millisecond

// Retry delays after failed syncs: the first failure is retried at once,
// the next after FirstRetry, doubling up to MaxRetry. Knocked connects
// wait for a working table at most that long.
const (
	FirstRetry = 20 * time.Millisecond
	MaxRetry   = time.Second
)

// Daemon is `seqknockd run`: it syncs at every period boundary, repairs the
// table as soon as anyone else changes it, retries a failed sync with a
// backoff, reloads on SIGHUP and stops on SIGTERM.
type Daemon struct {
	ConfigPath string
	Load       func(path string) (*Config, error)
	Kernel     Kernel
	Now        func() time.Time
	Log        *slog.Logger
	// TeardownOnExit removes the table when Run returns; by default the
	// table stays and its knocks expire by themselves (fail closed).
	TeardownOnExit bool
	// Notify sends a state ("READY=1", "WATCHDOG=1") to the service
	// manager; nil sends nothing. See SdNotify.
	Notify func(state string) error
	// Watchdog is systemd's watchdog timeout (WATCHDOG_USEC); 0: none.
	// The loop pings at half of it while it is healthy (see healthy).
	Watchdog time.Duration
	// After is the timer source; nil is time.After. Tests pass a fake clock.
	After func(time.Duration) <-chan time.Time
	// StatePath is the state file (spent knocks, highest clock); NoState
	// keeps none. When "", StateDir, if set, holds the default one for
	// the table and the network namespace (see StatePath); else none is
	// kept.
	StatePath string
	StateDir  string

	// Audit, when set, logs each admitted connection (from the admission
	// feed) and summarises the sampled drops (from the drop log group).
	Audit *Auditor
	// Metrics, when set, counts syncs, repairs and the rule counters, and
	// MetricsTextfile is where they are written at every sync and every
	// housekeeping tick (node_exporter's textfile collector).
	Metrics         *Metrics
	MetricsTextfile string
	// NearMiss, when set (with Audit), diagnoses the sampled dropped SYNs
	// that were knocks of a user's but missed (see NearMiss); InfoFile,
	// when set, names the daemon info file of a table (see DaemonInfo).
	NearMiss *NearMiss
	InfoFile func(table string) (string, error)
	// Lock, when set, makes the daemon the only one of its table (see
	// LockTable): Run takes it before it touches the table and fails at
	// once when another daemon holds it; a reload that renames the table
	// takes the new name's lock first, and is refused without it.
	Lock func(table string) (release func(), err error)
	// OnConfig, when set, is called with every config the daemon takes
	// (at start and at each reload), before it syncs it: the command
	// sizes the runtime's soft memory limit there (MemoryLimit).
	OnConfig func(*Config)

	state     *State        // spent knocks and the highest time synced
	statePath string        // the file it is kept in (StatePath resolved)
	feed      AdmissionFeed // nil when the nflog group could not be bound
	drops     AdmissionFeed // the drop log group; nil without Audit

	cfg *Config
	// installed is the config the last sync installed, through the
	// counter installedEnd, with no failure and no foreign change seen
	// since; nil: the next sync is whole. watching: Table.Watch is
	// running, so a foreign change is seen (a rotation relies on it).
	installed    *Config
	installedEnd uint64
	watching     bool

	lastAdmit, lastDropped uint64
	expiredLogged          map[string]bool
	// signLogged is the problem last logged per signed listener ("" once
	// signed), so each is logged once.
	signLogged map[string]string
	info       DaemonInfo
	infoFailed bool
	// lockReq takes the config to the locker's goroutine, stopLocker
	// ends it (see startLocker); both nil when listeners are not locked.
	lockReq    chan *Config
	stopLocker func()

	// The daemon's clock: never goes back (see clock).
	lastMono, eff time.Time
	clockBehind   bool

	// Failed syncs: since when, how many, the next delay.
	failing      bool
	failingSince time.Time
	failures     int
	backoff      time.Duration
	retryAt      time.Time

	loop
}

// Run syncs now, then at every period boundary and whenever Table.Watch
// reports a foreign change (repaired at once, also while a retry is
// pending), until ctx ends. A value on reload reloads the config and keys;
// a bad one is logged and the old kept. A failed sync is retried at once,
// then after FirstRetry, doubling up to MaxRetry. With Lock set, Run first
// takes the table's lock, or returns its error. Notify gets READY=1 after
// the first good sync and WATCHDOG=1 while the loop is healthy.
func (d *Daemon) Run(ctx context.Context, reload <-chan os.Signal) error {
	if err := d.start(ctx); err != nil {
		return err
	}
	defer d.stop()
	for {
		wait, why := d.nextWake()
		wake := d.after(wait)
		select {
		case <-ctx.Done():
			d.notify("STOPPING=1")
			return d.exit()
		case <-d.tick:
			d.housekeep()
		case <-d.signTick:
			d.signCheck()
		case <-reload:
			d.reload(ctx)
		case _, ok := <-d.watch:
			d.tableChanged(ctx, ok)
		case <-d.watchRetry:
			d.retryWatch(ctx)
		case <-wake:
			d.synced(d.sync(why))
		case <-ready(d.feed):
			d.drainFeed()
		case <-ready(d.drops):
			d.drainDrops()
		case _, ok := <-d.lost:
			d.conntrackLost(ok)
		case <-d.refresh:
			d.refreshSessions()
		case <-d.ping:
			d.pingWatchdog()
		}
	}
}

// loop is what Run waits on besides the clock, each nil while off.
type loop struct {
	after      func(time.Duration) <-chan time.Time // Daemon.After or time.After
	release    func()                               // the table's lock
	stopTicks  func()
	ready      bool // READY=1 was sent
	watch      <-chan struct{}
	watchRetry <-chan time.Time
	lost       <-chan struct{} // conntrack forgot connections
	refresh    <-chan time.Time
	tick       <-chan time.Time // housekeeping
	signTick   <-chan time.Time
	ping       <-chan time.Time // the watchdog's
}

// start takes the config, the table's lock and the state, opens the
// feeds and the watches, and syncs for the first time.
func (d *Daemon) start(ctx context.Context) error {
	cfg, err := d.Load(d.ConfigPath)
	if err != nil {
		return err
	}
	d.loop = loop{after: d.After, release: func() {}}
	if d.after == nil {
		d.after = time.After
	}
	if d.Lock != nil {
		if d.release, err = d.Lock(cfg.Table); err != nil {
			return err
		}
	}
	d.cfg = cfg
	d.onConfig()
	if err := d.loadState(); err != nil {
		d.release()
		return err
	}
	d.startTruth(ctx)
	d.openFeed()
	if d.Metrics != nil && d.Audit != nil {
		d.Metrics.Admitted = d.Audit.AdmittedCounts
	}
	// Watch first: a change made while the first sync runs is not missed.
	d.startWatch(ctx)
	d.lost, err = d.Kernel.Feeds.ConntrackLost(ctx)
	if err != nil {
		d.Log.Warn("cannot watch conntrack; connections it forgets are found again at the next sync only", "err", err)
	}
	// The listeners of signed services get their key before the daemon
	// reports ready, so a unit ordered before ssh.service sees them signed
	// when sshd is already up, and at least once a SignCheck later.
	err = d.sync("start")
	d.startLocker() // the table first, the lock before READY
	d.synced(err)
	d.stopTicks = func() {}
	d.resetSignTick()
	if d.Watchdog > 0 {
		d.ping = d.after(d.Watchdog / 2)
	}
	if d.Metrics != nil || d.Audit != nil {
		t := time.NewTicker(housekeeping)
		d.tick, d.stopTicks = t.C, t.Stop
	}
	return nil
}

// stop ends what start began.
func (d *Daemon) stop() {
	d.endLocker()
	d.stopTicks()
	if d.feed != nil {
		d.feed.Close()
	}
	if d.drops != nil {
		d.drops.Close()
	}
	d.release()
}

// nextWake is how long until the loop syncs unless something else comes
// first, and why it will: the period boundary, or a pending retry.
func (d *Daemon) nextWake() (time.Duration, string) {
	wait, why := d.untilNext(), "rotate"
	if d.failing {
		if r := d.retryAt.Sub(d.clock()); r < wait {
			wait, why = max(r, 0), "retry"
		}
	}
	return wait, why
}

// synced follows each sync of the loop: the listeners get their key and
// their lock (a reload may have changed the services), and the first
// good sync reports ready.
func (d *Daemon) synced(err error) {
	d.signServices()
	d.requestLocks()
	if err == nil && !d.ready {
		d.ready = true
		d.notify("READY=1")
	}
}

// startWatch (re)starts the watch for foreign changes to the table; until
// it runs, every sync is whole.
func (d *Daemon) startWatch(ctx context.Context) {
	d.watch, d.watchRetry = nil, nil
	d.watching, d.installed = false, nil
	ch, err := d.Kernel.Table.Watch(ctx, d.cfg.Table)
	if err != nil {
		d.Log.Error("cannot watch nftables; retrying in 1s (until then the table is only checked at each boundary)", "err", err)
		d.watchRetry = d.after(time.Second)
		return
	}
	d.watch, d.watching = ch, ch != nil
}

// retryWatch starts the watch again after it could not start, and
// repairs the table once it runs.
func (d *Daemon) retryWatch(ctx context.Context) {
	d.startWatch(ctx)
	if d.watch != nil {
		d.synced(d.sync("repair"))
	}
}

// tableChanged repairs the table, whole, after someone else changed it
// (removed it, say), without waiting for a pending retry; our own failed
// attempts change nothing and so report nothing. !ok: the watch ended,
// and starts again.
func (d *Daemon) tableChanged(ctx context.Context, ok bool) {
	if !ok {
		d.Log.Error("nftables watch ended; watching again")
		d.startWatch(ctx)
	}
	d.installed = nil
	d.synced(d.sync("repair"))
}

// reload takes the config again (SIGHUP) and syncs it; a config that
// does not load, or a new table whose lock another daemon holds, is
// logged and the old config kept.
func (d *Daemon) reload(ctx context.Context) {
	cfg, lerr := d.Load(d.ConfigPath)
	if lerr != nil {
		d.Log.Error("reload failed, keeping the previous config", "err", lerr)
		return
	}
	if cfg.Table != d.cfg.Table && d.Lock != nil {
		rel, lerr := d.Lock(cfg.Table)
		if lerr != nil {
			d.Log.Error("reload failed, keeping the previous config", "err", lerr)
			return
		}
		d.release()
		d.release = rel
	}
	old := d.cfg
	d.cfg = cfg
	d.onConfig()
	if cfg.Table != old.Table {
		d.Log.Warn("table renamed; the old table stays until `seqknockd teardown --table` removes it", "old", old.Table, "new", cfg.Table)
		high := d.state.High
		if err := d.loadState(); err != nil {
			d.Log.Error("cannot use the new table's state file; knocks of the window so far count as spent", "err", err)
			d.state = &State{Table: cfg.Table}
			d.state.Before = FailClosedFloor(cfg, d.clock())
		}
		if high.After(d.state.High) {
			d.state.High = high
		}
		d.startWatch(ctx)
	}
	if cfg.LogGroup != old.LogGroup {
		if d.feed != nil {
			d.feed.Close()
		}
		d.openFeed()
	}
	d.lastAdmit, d.lastDropped = 0, 0
	d.resetSignTick()
	d.Log.Info("config reloaded", append(UserChanges(old, cfg), "users", len(cfg.Users), "services", len(cfg.Services))...)
	d.synced(d.sync("reload"))
}

// conntrackLost schedules a refresh of the sessions sets. Conntrack
// destroys entries all the time (every closed connection): the refresh
// comes at most every SessionsDelay, which is shorter than TCP's first
// retransmission. !ok: the conntrack watch ended.
func (d *Daemon) conntrackLost(ok bool) {
	if !ok {
		d.lost = nil
		return
	}
	if d.refresh == nil {
		d.refresh = d.after(SessionsDelay)
	}
}

// signCheck signs the listeners of the signed services every SignCheck.
func (d *Daemon) signCheck() {
	d.signServices()
	d.resetSignTick()
}

func (d *Daemon) resetSignTick() {
	d.signTick = nil
	if slices.ContainsFunc(d.cfg.Services, func(s Service) bool { return s.Sign != "" }) {
		d.signTick = d.after(SignCheck)
	}
}

// pingWatchdog feeds systemd's watchdog while the loop is healthy.
func (d *Daemon) pingWatchdog() {
	if d.healthy(d.clock()) {
		d.notify("WATCHDOG=1")
	}
	d.ping = d.after(d.Watchdog / 2)
}

func (d *Daemon) onConfig() {
	if d.OnConfig != nil {
		d.OnConfig(d.cfg)
	}
}

// MemoryLimit is the Go runtime's soft memory limit for `seqknockd run`
// with cfg at now: a fixed 24 MiB for the program, plus one and a half
// times the heap a sync of cfg needs at most (its batch, 32 bytes a knock
// of the window, held whole since the kernel takes a batch only whole; the
// audit's tables, 12 bytes a knock of the window and of the counter before
// it). It grows with the config, so no config outgrows it, and leaves the
// collector room to work without thrashing; GOMEMLIMIT in the environment
// overrides it.
func MemoryLimit(cfg *Config, now time.Time) int64 {
	n := int64(knockCount(cfg, now))
	counters := int64(len(totp.Window(now, cfg.Period, cfg.Tolerance, cfg.Lookahead)))
	need := 32*n + 12*n*(counters+1)/counters
	return 24<<20 + need*3/2 + nearMissBytes(cfg, now)
}

// loadState reads the state file: the spent knocks it holds, and the
// highest time synced, behind which the daemon's clock never goes. A state
// it cannot trust (VetState) is replaced by one that counts every knock of
// the window so far as spent, with one log line. An error (the state
// directory is open to others) stops the daemon.
func (d *Daemon) loadState() error {
	path := d.StatePath
	if path == "" && d.StateDir == "" {
		path = NoState
	}
	path, err := StatePath(path, d.StateDir, d.cfg.Table)
	if err != nil {
		return err
	}
	d.statePath = path
	if d.StatePath == NoState {
		d.Log.Warn("no state file (--state " + NoState + "): knocks spent before a restart or a lost table may be admitted again while their window lasts")
	}
	now := d.Now()
	st := LoadVetted(path, d.cfg, now, d.Log)
	d.state = st
	if st.High.After(now) {
		d.lastMono, d.eff = time.Now(), st.High
		d.clockBehind = true
		d.Log.Warn("the clock is behind the last time synced; keeping the highest counter until it catches up", "behind", st.High.Sub(now).String())
	}
	if n := st.Len(); n > 0 {
		d.Log.Info("state restored", "spent_knocks", n)
	}
	return nil
}

// saveState writes the state file; a failure is logged.
// A file that could not be brought up to date is removed where possible:
// left behind, it would be trusted at the next start although knocks spent
// since are missing from it, while a missing file makes that start count
// the window so far as spent (see VetState).
func (d *Daemon) saveState() {
	err := d.state.Save(d.statePath)
	if err == nil {
		return
	}
	if rerr := removeState(d.statePath); rerr == nil {
		d.Log.Error("cannot write the state file; removed the stale one, so a restart counts the window so far as spent", "err", err)
	} else {
		d.Log.Error("cannot write the state file", "err", err)
	}
}

// openFeed binds the admit rule's nflog group, so each spent knock is known
// the moment it is spent. Without it (another process holds the group),
// the used set read at each sync is the only source: a knock spent between
// a sync and a table removal would be lost.
func (d *Daemon) openFeed() {
	d.feed = nil
	d.openDrops()
	f, err := d.Kernel.Feeds.Admissions(uint16(d.cfg.LogGroup))
	if err != nil {
		d.Log.Error("cannot read admissions from the kernel; spent knocks are learned at each sync only", "log_group", d.cfg.LogGroup, "err", err)
		return
	}
	d.feed = f
}

// openDrops binds the drop rule's nflog group, whose samples of dropped
// packets the audit sums up.
func (d *Daemon) openDrops() {
	if d.drops != nil {
		d.drops.Close()
		d.drops = nil
	}
	if d.Audit == nil {
		return
	}
	f, err := d.Kernel.Feeds.Admissions(uint16(d.cfg.DropLogGroup()))
	if err != nil {
		d.Log.Error("cannot read the drop samples from the kernel; drops are only counted", "group", d.cfg.DropLogGroup(), "err", err)
		return
	}
	d.drops = f
}

// ready is f's Ready; nil, which never fires, without f.
func ready(f AdmissionFeed) <-chan struct{} {
	if f == nil {
		return nil
	}
	return f.Ready()
}

// drainDrops counts the sampled drops per source; housekeep logs them.
func (d *Daemon) drainDrops() {
	pkts, err := d.drops.Drain()
	if err != nil && !errors.Is(err, admitlog.ErrLost) {
		d.Log.Warn("drop samples", "err", err)
	}
	for _, p := range pkts {
		d.Audit.Dropped(p.Src.Addr(), p.Dst.Port())
		d.noteDrop(p)
	}
}

// drainFeed records every admission the kernel has logged so far as a
// spent knock, until its used entry ends, and saves the state when that
// changed anything. It runs before every sync too, so a table rebuilt
// after a removal holds every knock spent before it.
func (d *Daemon) drainFeed() {
	if d.feed == nil {
		return
	}
	adms, err := d.feed.Drain()
	if err != nil {
		d.Log.Warn("admission feed", "err", err)
	}
	until := d.clock().Add(d.cfg.WindowLength())
	changed := false
	sessions := make([]nftgen.Session, 0, len(adms))
	bound := boundPorts(d.cfg)
	for _, a := range adms {
		user := ""
		if d.Audit != nil {
			user = d.Audit.Admitted(a.Src, a.Dst, a.Seq)
		}
		d.info.Admitted(AdmissionRecord{Time: d.Now(), User: user, Src: a.Src, Dst: a.Dst})
		var sport uint16 // a 48-bit knock is spent with its source port
		if bound[a.Dst.Port()] {
			sport = a.Src.Port()
		}
		if d.state.AddBound(sport, a.Dst.Port(), a.Seq, until) {
			changed = true
		}
		sessions = append(sessions, nftgen.Session{Src: a.Src, Dst: a.Dst})
	}
	if changed {
		d.saveState()
	}
	if len(adms) > 0 {
		d.writeInfo()
	}
	// The admitted connections join the sessions sets now rather than at
	// the next refill: until then, a mid-stream pickup of one (conntrack
	// -F) would be dropped, or in reset mode answered with a reset that
	// ends it.
	if len(sessions) > 0 {
		if err := d.Kernel.Sessions.AddSessions(d.cfg.Table, sessions); err != nil {
			d.Log.Warn("cannot add admitted connections to the sessions sets; the next refill will", "err", err)
		}
	}
}

// refreshSessions refills the sessions sets after conntrack forgot
// connections (`conntrack -F`, timeouts): the next packet of each is picked
// up mid-stream, and is accepted only if its connection is in the sets. A
// connection whose packet the table drops meanwhile retransmits it. On
// failure (no table, say) the whole table is synced.
func (d *Daemon) refreshSessions() {
	d.refresh = nil
	ss, err := d.Kernel.Sessions.Established(protectedPorts(d.cfg))
	if err == nil {
		err = d.Kernel.Sessions.ApplySessions(d.cfg.Table, ss)
	}
	if err != nil {
		d.Log.Warn("cannot refresh the sessions sets; syncing", "err", err)
		d.sync("repair")
	}
}

// healthy says whether the loop may feed the watchdog at now: it is
// running (it got here), and syncs have not been failing for a whole
// watchdog timeout. A loop stuck in a kernel call never gets here.
func (d *Daemon) healthy(now time.Time) bool {
	return !d.failing || now.Sub(d.failingSince) < d.Watchdog
}

func (d *Daemon) notify(state string) {
	if d.Notify == nil {
		return
	}
	if err := d.Notify(state); err != nil {
		d.Log.Warn("cannot notify the service manager", "state", state, "err", err)
	}
}

// clock returns the daemon's time: the wall clock (Now), except that it
// never goes back. After the wall clock is stepped back, the daemon's time
// goes on from where it was by the time that really elapsed (the system's
// monotonic clock, which no step moves), until the wall clock catches up. So
// a window, once passed, is never installed again. One warning when the
// clock falls behind, one line when it has caught up.
func (d *Daemon) clock() time.Time {
	wall, mono := d.Now(), time.Now()
	if d.eff.IsZero() {
		d.lastMono, d.eff = mono, wall
		return wall
	}
	eff := d.eff.Add(max(mono.Sub(d.lastMono), 0))
	if wall.After(eff) {
		eff = wall
	}
	behind := eff.Sub(wall)
	switch {
	case behind > time.Second && !d.clockBehind: // a step, not scheduling jitter
		d.clockBehind = true
		d.Log.Warn("the clock went back; keeping the highest counter until it catches up", "behind", behind.String())
	case behind == 0 && d.clockBehind:
		d.clockBehind = false
		d.Log.Info("the clock caught up")
	}
	d.lastMono, d.eff = mono, eff
	return eff
}

func (d *Daemon) untilNext() time.Duration {
	now := d.clock()
	return totp.NextBoundary(now, d.cfg.Period).Sub(now)
}

// sync runs one sync and logs one line: what was written and how many knocks
// were admitted and dropped since the last line. A failure logs one line and
// schedules the retry; the first success after failures logs the recovery.
func (d *Daemon) sync(why string) error {
	d.drainFeed()
	now := d.clock()
	if n, limit := d.state.Len(), MaxSpent(d.cfg, now); n > limit {
		d.Log.Warn("more spent knocks than the used set holds; every knock of a counter that began before spent_before counts as spent instead",
			"spent_knocks", n, "used_size", limit, "spent_before", FailClosedFloor(d.cfg, now).UTC().Format(time.RFC3339))
	}
	start := time.Now()
	// A rotation adds only the counters the last sync did not install;
	// anything else (start, reload, repair, retry, or a table found not
	// current) writes the whole table.
	rotate := why == "rotate" && d.watching && d.installed == d.cfg
	sync := func(onKnock func(Knock)) (nftgen.Result, error) {
		if rotate {
			res, err := RotateKeepingWith(d.Kernel, d.cfg, now, d.installedEnd+1, &d.state.Spent, onKnock)
			if !errors.Is(err, nftgen.ErrStale) {
				return res, err
			}
			rotate = false
			d.Log.Warn("table not current at the rotation; syncing it whole", "err", err)
		}
		return SyncKeepingWith(d.Kernel, d.cfg, now, &d.state.Spent, onKnock)
	}
	var res nftgen.Result
	var err error
	d.installed = nil
	if d.Audit != nil {
		res, err = d.Audit.Record(d.cfg, now, sync)
	} else {
		res, err = sync(nil)
	}
	if err == nil {
		d.installed, d.installedEnd = d.cfg, WindowEnd(d.cfg, now)
	}
	if d.Metrics != nil {
		valid := res.Elements
		if rotate { // it wrote the new counter's; the set holds the window's
			valid = knockCount(d.cfg, now)
		}
		d.Metrics.SyncDone(now, time.Since(start), err, valid)
		if err == nil && why == "repair" {
			d.Metrics.Repaired()
		}
	}
	if err != nil {
		defer d.writeMetrics()
		now = d.clock() // the call may have taken long
		if !d.failing {
			d.failing, d.failingSince, d.failures, d.backoff = true, now, 0, 0
		} else {
			d.backoff = min(max(2*d.backoff, FirstRetry), MaxRetry)
		}
		d.failures++
		d.retryAt = now.Add(d.backoff)
		d.Log.Error("sync failed", "why", why, "err", err, "retry_in", d.backoff.String())
		d.afterSync(err)
		return err
	}
	if now.After(d.state.High) {
		d.state.High = now
	}
	d.saveState()
	if d.failing {
		d.Log.Info("sync recovered", "failures", d.failures, "after", now.Sub(d.failingSince).String())
		d.failing = false
	}
	attrs := []any{"why", why, "counter", totp.Counter(now, d.cfg.Period), "elements", res.Elements}
	for _, f := range []struct {
		key string
		on  bool
	}{{"added_only", rotate}, {"created", res.Created}, {"replaced_foreign_table", res.Replaced}, {"rules_rebuilt", res.RulesRebuilt}} {
		if f.on {
			attrs = append(attrs, f.key, true)
		}
	}
	if live, err := d.Kernel.Table.ReadCounters(d.cfg.Table); err == nil {
		a, dr := live.Admitted.Packets, live.Dropped.Packets
		if a < d.lastAdmit || dr < d.lastDropped || res.RulesRebuilt {
			d.lastAdmit, d.lastDropped = 0, 0 // counters were reset
		}
		attrs = append(attrs, "admitted", a-d.lastAdmit, "dropped", dr-d.lastDropped)
		d.lastAdmit, d.lastDropped = a, dr
		if d.Metrics != nil {
			d.Metrics.Counters(live)
		}
	}
	d.Log.Info("sync", attrs...)
	d.logExpired(now)
	d.writeMetrics()
	d.afterSync(nil)
	return nil
}

// housekeeping is how often the daemon logs the drop summaries that are
// due, refreshes the rule counters and rewrites the metrics textfile
// between syncs.
const housekeeping = 10 * time.Second

func (d *Daemon) housekeep() {
	if d.Audit != nil {
		d.Audit.FlushDrops(d.clock())
	}
	if d.Metrics != nil {
		if live, err := d.Kernel.Table.ReadCounters(d.cfg.Table); err == nil {
			d.Metrics.Counters(live)
		}
	}
	d.writeMetrics()
}

// writeMetrics writes the textfile, when one is configured.
func (d *Daemon) writeMetrics() {
	if d.Metrics == nil || d.MetricsTextfile == "" {
		return
	}
	if err := d.Metrics.WriteTextfile(d.MetricsTextfile, d.Now()); err != nil {
		d.Log.Error("cannot write the metrics textfile", "err", err)
	}
}

// logExpired logs, once each, the keys that have passed their not_after:
// the sync just applied left them out.
func (d *Daemon) logExpired(now time.Time) {
	for _, k := range ExpiredKeys(d.cfg, now) {
		if d.expiredLogged[k] {
			continue
		}
		if d.expiredLogged == nil {
			d.expiredLogged = map[string]bool{}
		}
		d.expiredLogged[k] = true
		d.Log.Warn("key expired; its knocks are no longer valid", "key", k)
	}
}

func (d *Daemon) exit() error {
	d.endLocker() // no lock is put on after the teardown's unlock
	d.drainFeed()
	if !d.TeardownOnExit {
		d.Log.Info("stopping; the table stays and its knocks expire by themselves", "table", d.cfg.Table)
		return nil
	}
	// The used set goes with the table: keep its knocks first.
	if live, err := d.Kernel.Table.Spent(d.cfg.Table, d.clock()); err == nil {
		d.state.Merge(live)
	}
	d.saveState()
	if _, err := d.Kernel.Table.Teardown(d.cfg.Table); err != nil {
		return fmt.Errorf("teardown on exit: %w", err)
	}
	UnlockOnce(d.Kernel, d.cfg, d.Log)
	d.Log.Info("stopping; table removed", "table", d.cfg.Table)
	return nil
}
