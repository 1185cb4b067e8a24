package server

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// LockPoll is how often `seqknockd run` looks for new listeners on the
// protected ports (the kernel announces none: sock_diag's multicast groups
// report destroyed sockets only), so a restarted service's new listener is
// locked within about this long. A poll is one sock_diag dump per port;
// only a listener not seen before costs a search of /proc (see lockers).
const LockPoll = 50 * time.Millisecond

// LockRecheck is how often (and at every sync) every listener's lock is
// read back, and a listener that could not be locked is tried again.
const LockRecheck = time.Second

// LockResult is what Listeners.Lock found or did for one listener.
type LockResult struct {
	PID int
	// Locked: the listener has the filter for the packet mark bit;
	// Changed: it got it in this call.
	Locked, Changed bool
	// Err says why it is not locked. Pending: the search for its
	// holder is under way or due, so it may be locked at the next call.
	Err     error
	Pending bool
}

// LockedListener is one listener of a protected port as status and
// check-config show it; a port with no listener is listed once, with an
// empty Address.
type LockedListener struct {
	Port    uint16 `json:"port"`
	Address string `json:"address"`
	Locked  bool   `json:"locked"`
	// Reason says why it is not locked (or, without Address, that the
	// port has no listener yet).
	Reason string `json:"reason,omitempty"`
}

// NoListener is the Reason of a protected port with no listener in the
// table's network namespace.
const NoListener = "no listener yet (a service in another network namespace is not seen, and the table does not protect it)"

// OtherNetns is the Reason of a listener of a protected port in another
// network namespace: the table does not see its traffic (it arrives
// forwarded, not for this namespace) and seqknockd does not lock it.
const OtherNetns = "listener in another network namespace: neither the table nor seqknockd protects it"

// lockEntry is what the daemon knows of one listener, by inode.
type lockEntry struct {
	port   uint16
	local  netip.AddrPort
	locked bool
	// pending: the search for its holder goes on (see LockResult).
	pending bool
	logged  string // the problem last logged ("" once locked)
}

// protectedPorts returns cfg's protected ports, each once, in order.
func protectedPorts(cfg *Config) []uint16 {
	var out []uint16
	seen := map[uint16]bool{}
	for _, s := range cfg.Services {
		if !seen[s.Port] {
			seen[s.Port] = true
			out = append(out, s.Port)
		}
	}
	return out
}

// locker locks the listeners of the protected ports: at each request
// of the daemon's loop (after every sync) and on its own clock. It runs
// in a goroutine of its own (see startLocker), so a search of /proc for a
// listener's holder never holds up the loop that repairs the table.
type locker struct {
	k       Listeners
	log     *slog.Logger
	metrics *Metrics
	// locks are the protected ports' listeners, by inode.
	locks   map[uint32]*lockEntry
	lastAll time.Time // the last full lock check
}

// lock locks the listeners of cfg's protected ports that lack the
// filter. all: every listener's lock is read back and a failed one tried
// again; otherwise only listeners not seen before, or whose holder is
// still being searched for, are (the fast poll).
// Each listener is logged once when locked and once for each new reason
// it cannot be.
func (lk *locker) lock(cfg *Config, all bool, now time.Time) {
	if lk.locks == nil {
		lk.locks = map[uint32]*lockEntry{}
	}
	if all {
		lk.lastAll = now
	}
	seen := map[uint32]bool{}
	var todo []ListenerState
	for _, port := range protectedPorts(cfg) {
		ls, err := lk.k.List(port, nil)
		if err != nil {
			if all {
				lk.log.Error("cannot list the listeners to lock", "port", port, "err", err)
			}
			// Keep what is known of this port's listeners.
			for ino, e := range lk.locks {
				if e.port == port {
					seen[ino] = true
				}
			}
			continue
		}
		for _, l := range ls {
			seen[l.Inode] = true
			e := lk.locks[l.Inode]
			if e != nil && e.port == port && !all && !e.pending {
				continue
			}
			if e == nil || e.port != port {
				lk.locks[l.Inode] = &lockEntry{port: port, local: l.Local, logged: "-"}
			}
			todo = append(todo, l)
		}
	}
	for ino := range lk.locks {
		if !seen[ino] {
			delete(lk.locks, ino)
		}
	}
	if len(todo) > 0 {
		for i, r := range lk.k.Lock(todo, cfg.PacketMark(), true) {
			e := lk.locks[todo[i].Inode]
			e.locked = r.Locked && r.Err == nil
			e.pending = r.Pending
			switch {
			case r.Pending:
				// Not a reason yet: the search for its holder goes on.
			case e.locked:
				if r.Changed || e.logged != "" {
					lk.log.Info("listener locked: only SYNs the table admitted reach it", "port", e.port, "listener", e.local.String(), "pid", r.PID)
				}
				e.logged = ""
			case r.Err != nil && r.Err.Error() != e.logged:
				e.logged = r.Err.Error()
				lk.log.Warn("listener not locked; only the table protects it", "port", e.port, "listener", e.local.String(), "err", r.Err)
			}
		}
	}
	if lk.metrics != nil {
		locked, unlocked := map[uint16]int{}, map[uint16]int{}
		for _, e := range lk.locks {
			if e.locked {
				locked[e.port]++
			} else {
				unlocked[e.port]++
			}
		}
		lk.metrics.Listeners(locked, unlocked)
	}
}

// run locks at each config sent on req (a full check) and every LockPoll
// with the last one, cfg until then (the fast poll; a full check once
// LockRecheck has passed), until ctx ends.
func (lk *locker) run(ctx context.Context, cfg *Config, req <-chan *Config) {
	t := time.NewTicker(LockPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case cfg = <-req:
			lk.lock(cfg, true, time.Now())
		case now := <-t.C:
			lk.lock(cfg, now.Sub(lk.lastAll) >= LockRecheck, now)
		}
	}
}

// startLocker locks the listeners once, before the daemon reports ready
// (a unit ordered before the service's finds its listeners locked when
// it is already up), then starts the locker's goroutine. None when
// listeners are not locked.
func (d *Daemon) startLocker() {
	if d.Kernel.Listeners == NoListeners {
		return
	}
	lk := &locker{k: d.Kernel.Listeners, log: d.Log, metrics: d.Metrics}
	lk.lock(d.cfg, true, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// The config and channel are read here, not in the goroutine, which
	// would race with a reload's write of d.cfg.
	cfg, req := d.cfg, make(chan *Config, 1)
	d.lockReq = req
	go func() { defer close(done); lk.run(ctx, cfg, req) }()
	d.stopLocker = func() { cancel(); <-done }
}

// endLocker stops the locker's goroutine and waits for it to end.
func (d *Daemon) endLocker() {
	if d.stopLocker != nil {
		d.stopLocker()
		d.stopLocker, d.lockReq = nil, nil
	}
}

// requestLocks asks the locker for a full check with the current config,
// without waiting: a request not yet taken is replaced.
func (d *Daemon) requestLocks() {
	if d.lockReq != nil {
		sendLatest(d.lockReq, d.cfg)
	}
}

// sendLatest puts v in ch, a channel of capacity 1, without blocking: a
// value not yet taken is replaced.
func sendLatest[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// LockOnce locks the listeners of cfg's protected ports, once (seqknockd
// sync): the filter stays on each socket after this process exits. It
// logs what it did and each listener it could not lock, and returns how
// many stay unlocked.
func LockOnce(k Kernel, cfg *Config, log *slog.Logger) int {
	lk := &locker{k: k.Listeners, log: log}
	lk.lock(cfg, true, time.Now())
	n := 0
	for _, e := range lk.locks {
		if !e.locked {
			n++
		}
	}
	return n
}

// LockedListeners lists the listeners of cfg's protected ports with
// whether each is locked and why not, reading only (status and
// check-config), sorted by port and address.
func LockedListeners(k Kernel, cfg *Config) ([]LockedListener, error) {
	out := []LockedListener{}
	bit := cfg.PacketMark()
	for _, port := range protectedPorts(cfg) {
		ls, err := k.Listeners.List(port, nil)
		if err != nil {
			return nil, fmt.Errorf("listeners of port %d: %w", port, err)
		}
		if len(ls) == 0 {
			out = append(out, LockedListener{Port: port, Reason: NoListener})
			others, err := k.Listeners.OtherNetns(port)
			if err != nil {
				return nil, fmt.Errorf("listeners of port %d: %w", port, err)
			}
			for _, o := range others {
				out = append(out, LockedListener{Port: port, Address: o, Reason: OtherNetns})
			}
		}
		for i, r := range k.Listeners.Lock(ls, bit, false) {
			l := ls[i]
			ll := LockedListener{Port: port, Address: l.Local.String(), Locked: r.Locked && r.Err == nil}
			if r.Err != nil {
				ll.Reason = r.Err.Error()
			} else if !r.Locked {
				ll.Reason = "no filter on it yet (seqknockd locks it at its next check)"
			}
			out = append(out, ll)
		}
	}
	slices.SortStableFunc(out, func(x, y LockedListener) int {
		return cmp.Or(cmp.Compare(x.Port, y.Port), strings.Compare(x.Address, y.Address))
	})
	return out, nil
}

// lockDifferences are status differences: a listener of a protected port
// in the table's network namespace that is not locked. A port with no
// listener there is none, and neither is a listener in another network
// namespace (listed, but the table never protected it: a container's own
// service on the same port number must not make status fail forever).
func lockDifferences(ls []LockedListener) []string {
	var diff []string
	for _, l := range ls {
		if !l.Locked && l.Address != "" && l.Reason != OtherNetns {
			diff = append(diff, fmt.Sprintf("port %d listener %s is not locked: %s", l.Port, l.Address, l.Reason))
		}
	}
	return diff
}

// UnlockOnce removes the lock from the listeners of cfg's protected ports
// (seqknockd teardown: without the table, a locked listener would admit
// nobody), logging each, and returns how many it unlocked.
func UnlockOnce(k Kernel, cfg *Config, log *slog.Logger) int {
	n := 0
	for _, port := range protectedPorts(cfg) {
		ls, err := k.Listeners.List(port, nil)
		if err != nil {
			log.Error("cannot list the listeners to unlock", "port", port, "err", err)
			continue
		}
		for _, l := range ls {
			ok, err := k.Listeners.Unlock(l.Inode)
			switch {
			case err != nil:
				log.Warn("cannot unlock listener; it admits only SYNs a table marks until the service restarts", "port", port, "listener", l.Local.String(), "err", err)
			case ok:
				n++
				log.Info("listener unlocked", "port", port, "listener", l.Local.String())
			}
		}
	}
	return n
}
