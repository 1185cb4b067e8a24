package server

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"time"
)

// LockPoll is how often `seqknockd run` looks for new listeners on the
// protected ports, so a restarted service's new listener is locked within
// about this long. It polls because the kernel announces no new listening
// socket: sock_diag's multicast groups report destroyed sockets only. One
// poll is one sock_diag dump per protected port (a netlink round trip of
// tens of microseconds for a handful of ports); only a listener not seen
// before costs the /proc search and pidfd_getfd.
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
	// Err says why it is not locked.
	Err error
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
	logged string // the problem last logged ("" once locked)
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

// lockListeners locks the listeners of the protected ports that lack the
// filter. all: every listener's lock is read back and a failed one tried
// again; otherwise only listeners not seen before are (the fast poll).
// Each listener is logged once when locked and once for each new reason
// it cannot be.
func (d *Daemon) lockListeners(all bool) {
	if d.locks == nil {
		d.locks = map[uint32]*lockEntry{}
	}
	if all {
		d.lastLocks = time.Now()
	}
	bit := d.cfg.PacketMark()
	seen := map[uint32]bool{}
	locked, unlocked := map[uint16]int{}, map[uint16]int{}
	for _, port := range protectedPorts(d.cfg) {
		ls, err := d.Kernel.Listeners.List(port, nil)
		if err != nil {
			if all {
				d.Log.Error("cannot list the listeners to lock", "port", port, "err", err)
			}
			// Keep what is known of this port's listeners.
			for ino, e := range d.locks {
				if e.port == port {
					seen[ino] = true
					count(locked, unlocked, port, e.locked)
				}
			}
			continue
		}
		for _, l := range ls {
			seen[l.Inode] = true
			e := d.locks[l.Inode]
			if e != nil && e.port == port && !all {
				count(locked, unlocked, port, e.locked)
				continue
			}
			if e == nil || e.port != port {
				e = &lockEntry{port: port, local: l.Local, logged: "-"}
				d.locks[l.Inode] = e
			}
			r := d.Kernel.Listeners.Lock(l.Inode, bit, true)
			e.locked = r.Locked && r.Err == nil
			count(locked, unlocked, port, e.locked)
			switch {
			case e.locked:
				if r.Changed || e.logged != "" {
					d.Log.Info("listener locked: only SYNs the table admitted reach it", "port", port, "listener", l.Local.String(), "pid", r.PID)
				}
				e.logged = ""
			case r.Err != nil && r.Err.Error() != e.logged:
				e.logged = r.Err.Error()
				d.Log.Warn("listener not locked; only the table protects it", "port", port, "listener", l.Local.String(), "err", r.Err)
			}
		}
	}
	for ino := range d.locks {
		if !seen[ino] {
			delete(d.locks, ino)
		}
	}
	if d.Metrics != nil {
		d.Metrics.Listeners(locked, unlocked)
	}
}

func count(locked, unlocked map[uint16]int, port uint16, ok bool) {
	if ok {
		locked[port]++
	} else {
		unlocked[port]++
	}
}

// lockTicker returns the fast poll's channel (nil when listeners are not
// locked) and its stop.
func (d *Daemon) lockTicker() (<-chan time.Time, func()) {
	if d.Kernel.Listeners == NoListeners {
		return nil, func() {}
	}
	t := time.NewTicker(LockPoll)
	return t.C, t.Stop
}

// pollLocks is one tick of the fast poll: new listeners only, and every
// listener once LockRecheck has passed since the last full check.
func (d *Daemon) pollLocks() {
	all := time.Since(d.lastLocks) >= LockRecheck
	d.lockListeners(all)
}

// LockOnce locks the listeners of cfg's protected ports, once (seqknockd
// sync): the filter stays on each socket after this process exits. It
// logs what it did and each listener it could not lock, and returns how
// many stay unlocked.
func LockOnce(k Kernel, cfg *Config, log *slog.Logger) int {
	d := &Daemon{Kernel: k, cfg: cfg, Log: log}
	d.lockListeners(true)
	n := 0
	for _, e := range d.locks {
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
		for _, l := range ls {
			r := k.Listeners.Lock(l.Inode, bit, false)
			ll := LockedListener{Port: port, Address: l.Local.String(), Locked: r.Locked && r.Err == nil}
			if r.Err != nil {
				ll.Reason = r.Err.Error()
			} else if !r.Locked {
				ll.Reason = "no filter on it yet (seqknockd locks it at its next check)"
			}
			out = append(out, ll)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].Address < out[j].Address
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
