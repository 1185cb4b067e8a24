package server

import (
	"fmt"
	"slices"
	"time"

	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

// SyncKeeping makes the kernel hold the state cfg wants at now, in one
// transaction, and keeps spent knocks spent: it adds the live used
// set's knocks to spent, and installs the state with all of spent in the
// used set and none of it in valid, nor any knock of a counter that begins
// before spent.Before. Where the used set cannot be read (no table), spent
// alone counts. A list longer than MaxSpent is replaced by a Before that
// covers it (Spent.Bound), so the state never makes a sync fail. The sessions sets get the host's connections
// to the protected ports.
func SyncKeeping(k Kernel, cfg *Config, now time.Time, spent *Spent) (nftgen.Result, error) {
	return SyncKeepingWith(k, cfg, now, spent, nil)
}

// SyncKeepingWith is SyncKeeping that also calls onKnock with every knock
// it installs, from the same pass that derives them (the audit's map costs
// no second derivation); onKnock may be nil. The knocks are derived as the
// batch is written (nftgen.State.Knocks), never all held at once.
func SyncKeepingWith(k Kernel, cfg *Config, now time.Time, spent *Spent, onKnock func(Knock)) (nftgen.Result, error) {
	return syncWith(k, k.Table.Apply, cfg, now, 0, spent, onKnock)
}

// RotateKeepingWith is a rotation: SyncKeepingWith, but it writes only the
// knocks of counters from `from` on (the ones the last sync did not
// install) and adds them to the valid set without flushing it; the knocks
// already there expire by their own timeouts. It writes O(new knocks), not
// O(all). When the table is not otherwise current, it writes nothing and
// returns an error that wraps nftgen.ErrStale: the caller syncs whole
// instead.
func RotateKeepingWith(k Kernel, cfg *Config, now time.Time, from uint64, spent *Spent, onKnock func(Knock)) (nftgen.Result, error) {
	return syncWith(k, k.Table.AddValid, cfg, now, from, spent, onKnock)
}

func syncWith(k Kernel, apply func(nftgen.State, time.Time) (nftgen.Result, error), cfg *Config, now time.Time, from uint64, spent *Spent, onKnock func(Knock)) (nftgen.Result, error) {
	live, err := k.Table.Spent(cfg.Table, now)
	if err != nil {
		return nftgen.Result{}, fmt.Errorf("sync: %w", err)
	}
	spent.Merge(live)
	spent.Prune(now)
	spent.Bound(MaxSpent(cfg, now), FailClosedFloor(cfg, now))
	from = max(from, spent.FirstCounter(cfg.Period))
	s := streamed(cfg, now, from, onKnock)
	s.Spent = spent.List()
	if s.Sessions, err = k.Sessions.Established(s.Ports); err != nil {
		return nftgen.Result{}, fmt.Errorf("sync: %w", err)
	}
	res, err := apply(s, now)
	if err != nil {
		return res, fmt.Errorf("sync: %w", err)
	}
	return res, nil
}

// streamed is Desired with the knocks of counters from `from` on yielded
// by s.Knocks as they are derived, each passed to onKnock too, instead of
// held in s.Valid; s.KnockCount counts the whole window.
func streamed(cfg *Config, now time.Time, from uint64, onKnock func(Knock)) nftgen.State {
	s := header(cfg)
	s.KnockCount = knockCount(cfg, now)
	s.Knocks = func(yield func(nftgen.Element) bool) {
		eachKnockFrom(cfg, now, from, func(k Knock) {
			if onKnock != nil {
				onKnock(k)
			}
			yield(nftgen.Element{SPort: k.SPort, Port: k.Port, ISN: k.ISN, Expires: k.Expires})
		})
	}
	return s
}

// WindowEnd is the newest counter of the window at now: what a sync at now
// installs last, and after which the next rotation starts.
func WindowEnd(cfg *Config, now time.Time) uint64 {
	w := totp.Window(now, cfg.Period, cfg.Tolerance, cfg.Lookahead)
	return w[len(w)-1].Counter
}

// Desired returns the table state for cfg at now: for every service port,
// every user allowed on it, every unexpired key of that user, every counter
// of the window and every slot, one valid element that expires when its
// counter leaves the window or at its key's not_after, whichever is first.
// It is pure: the same config and time give the same state.
func Desired(cfg *Config, now time.Time) nftgen.State {
	s := header(cfg)
	s.Valid = make([]nftgen.Element, 0, knockCount(cfg, now))
	EachKnock(cfg, now, func(k Knock) {
		s.Valid = append(s.Valid, nftgen.Element{SPort: k.SPort, Port: k.Port, ISN: k.ISN, Expires: k.Expires})
	})
	return s
}

// header is the table state for cfg without its knocks.
func header(cfg *Config) nftgen.State {
	s := nftgen.State{
		Table:       cfg.Table,
		Rules:       rules(cfg),
		UsedTimeout: cfg.WindowLength(),
	}
	for _, svc := range cfg.Services {
		s.Ports = append(s.Ports, svc.Port)
		if svc.Unknocked == UnknockedReset {
			s.ResetPorts = append(s.ResetPorts, svc.Port)
		}
	}
	return s
}

// Knock is one valid knock and what made it.
type Knock struct {
	User    string
	Key     int // index in the user's Keys
	Port    uint16
	Counter uint64
	Slot    uint8
	ISN     uint32
	// SPort is the source port the knock must come from (a service with
	// bind_source_port), 0 when any will do.
	SPort   uint16
	Expires time.Time
}

// EachKnock calls fn for every knock valid at now, in the order of users,
// their keys, services, counters and slots.
func EachKnock(cfg *Config, now time.Time, fn func(Knock)) { eachKnockFrom(cfg, now, 0, fn) }

// knockCount is how many knocks EachKnock gives at now.
func knockCount(cfg *Config, now time.Time) int {
	counters := len(totp.Window(now, cfg.Period, cfg.Tolerance, cfg.Lookahead))
	ports := userPorts(cfg)
	n := 0
	for _, u := range cfg.Users {
		keys := 0
		for _, k := range u.Keys {
			if k.ValidAt(now) {
				keys++
			}
		}
		n += keys * len(ports(u.Name))
	}
	return n * counters * cfg.Slots
}

// userPorts returns the ports each user may knock on, in service order.
// The users no service names share one list: no allocation per user.
func userPorts(cfg *Config) func(user string) []uint16 {
	var all []uint16 // the ports of the services open to every user
	named := map[string][]uint16{}
	for _, svc := range cfg.Services {
		if len(svc.Users) == 0 {
			all = append(all, svc.Port)
			for u, ps := range named {
				named[u] = append(ps, svc.Port)
			}
			continue
		}
		for _, u := range svc.Users {
			ps, ok := named[u]
			if !ok {
				ps = slices.Clone(all)
			}
			named[u] = append(ps, svc.Port)
		}
	}
	return func(user string) []uint16 {
		if ps, ok := named[user]; ok {
			return ps
		}
		return all
	}
}

// boundPorts returns the ports of the services with bind_source_port.
func boundPorts(cfg *Config) map[uint16]bool {
	out := map[uint16]bool{}
	for _, svc := range cfg.Services {
		if svc.BindSourcePort {
			out[svc.Port] = true
		}
	}
	return out
}

// rules returns the parameters of the rules cfg wants.
func rules(cfg *Config) nftgen.Rules {
	r := nftgen.Rules{MarkBit: cfg.MarkBit(), PacketMarkBit: cfg.PacketMark(), LogGroup: uint16(cfg.LogGroup), DropLogGroup: uint16(cfg.DropLogGroup()),
		Guess: cfg.Guess, Global: cfg.GuessGlobal, SourcePort: len(boundPorts(cfg)) > 0}
	if !r.Guess.Off() {
		// The prefixes matter (and are in the fingerprint) only with the
		// per-source limit on.
		r.Prefix4, r.Prefix6 = uint8(cfg.GuessPrefix4), uint8(cfg.GuessPrefix6)
	}
	if !r.Guess.Off() || !r.Global.Off() {
		// The budget matters (and is in the fingerprint) only where a
		// limit locks sources out.
		r.LockedLookup = cfg.LockoutLookup
	}
	return r
}

// ExpiredKeys returns the keys of cfg that no longer make valid knocks at
// now, as "user: file until time" strings; the daemon logs each once.
func ExpiredKeys(cfg *Config, now time.Time) []string {
	var out []string
	for _, u := range cfg.Users {
		for _, k := range u.Keys {
			if !k.ValidAt(now) {
				out = append(out, u.Name+": "+k.String())
			}
		}
	}
	return out
}
