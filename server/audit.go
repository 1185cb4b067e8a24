package server

import (
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

// Auditor turns what the kernel reports into log lines: one line per
// admitted connection, naming the user whose knock it was, and a
// rate-limited summary of dropped packets. It finds the user from the
// sequence number through a map the daemon derives at each sync from the
// knocks it installs (Update); nothing in it is on the packet path.
type Auditor struct {
	Log *slog.Logger
	// DropInterval is how often at most one summary line per source is
	// logged; 0 means a minute.
	DropInterval time.Duration
	// MaxDropSources caps the sources named in one round of summaries;
	// the rest are counted in one line. 0 means 5.
	MaxDropSources int

	mu  sync.Mutex
	cfg *Config
	// who maps a knock, port<<32|isn, to what made it, packed: user index
	// (32 bits), key index (8), slot (8), counter (low 16 bits).
	who     map[uint64]uint64
	counter uint64 // the counter at the last sync
	drops   map[netip.Addr]*dropCount
	// lastRound is when the last round of drop summaries was logged.
	lastRound time.Time
	// admitted counts the admissions logged, for metrics.
	admitted map[AdmitKey]uint64
	index    map[string]int // user name -> index in cfg.Users
}

// AdmitKey counts admissions: a user on a port.
type AdmitKey struct {
	User string
	Port uint16
}

type dropCount struct {
	n     uint64
	ports map[uint16]uint64
}

func pack(user, key int, slot uint8, counter uint64) uint64 {
	return uint64(user)<<32 | uint64(key&0xff)<<24 | uint64(slot)<<16 | counter&0xffff
}

// unpack reads a packed knock; its counter is the one within ±2^15 of
// near.
func unpack(v, near uint64) (user, key int, slot uint8, counter uint64) {
	d := int16(uint16(near) - uint16(v))
	return int(v >> 32), int(v >> 24 & 0xff), uint8(v >> 16), near - uint64(int64(d))
}

// Record runs sync, the sync of cfg at now, and keeps the map current: the
// knocks sync installs go into the map in the same pass that derives them
// (sync calls onKnock with each), and those of counters that have left the
// window are pruned, but the one just before it stays, since the kernel
// may have admitted one of its knocks just before the boundary. A new
// config starts a new map.
func (a *Auditor) Record(cfg *Config, now time.Time, sync func(onKnock func(Knock)) (nftgen.Result, error)) (nftgen.Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg != cfg {
		a.who = make(map[uint64]uint64, knockCount(cfg, now)*4/3) // the window and the counter before it
		a.index = make(map[string]int, len(cfg.Users))
		for i, u := range cfg.Users {
			a.index[u.Name] = i
		}
		a.cfg = cfg
	}
	c := totp.Counter(now, cfg.Period)
	res, err := sync(func(kn Knock) {
		a.who[uint64(kn.Port)<<32|uint64(kn.ISN)] = pack(a.index[kn.User], kn.Key, kn.Slot, kn.Counter)
	})
	if err != nil {
		return res, err
	}
	a.counter = c
	oldest := c - min(c, uint64(cfg.Tolerance)+1)
	for key, v := range a.who {
		if _, _, _, kc := unpack(v, c); kc < oldest {
			delete(a.who, key)
		}
	}
	return res, nil
}

// Admitted logs one admitted connection: the SYN from src to dst carried
// the knock seq.
func (a *Auditor) Admitted(src, dst netip.AddrPort, seq uint32) {
	a.mu.Lock()
	v, ok := a.who[uint64(dst.Port())<<32|uint64(seq)]
	var u User
	var key int
	var slot uint8
	var counter uint64
	if ok {
		var user int
		user, key, slot, counter = unpack(v, a.counter)
		u = a.cfg.Users[user]
		if a.admitted == nil {
			a.admitted = map[AdmitKey]uint64{}
		}
		a.admitted[AdmitKey{u.Name, dst.Port()}]++
	}
	a.mu.Unlock()
	if !ok {
		a.Log.Warn("knock admitted, but not one of the current config's (a knock of a config replaced since)",
			"port", dst.Port(), "src", src.Addr().String(), "sport", src.Port())
		return
	}
	attrs := []any{"user", u.Name, "port", dst.Port(), "src", src.Addr().String(), "sport", src.Port(),
		"counter", counter, "slot", slot}
	if len(u.Keys) > 1 {
		attrs = append(attrs, "key", u.Keys[key].File)
	}
	a.Log.Info("knock admitted", attrs...)
}

// Dropped counts a dropped packet from src to port, as sampled by the
// kernel (a rate-limited log rule): no line is logged here.
func (a *Auditor) Dropped(src netip.Addr, port uint16) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.drops == nil {
		a.drops = map[netip.Addr]*dropCount{}
	}
	d := a.drops[src]
	if d == nil {
		if len(a.drops) >= maxDropTracked {
			return // a flood from many sources: the total is in the counters
		}
		d = &dropCount{ports: map[uint16]uint64{}}
		a.drops[src] = d
	}
	d.n++
	d.ports[port]++
}

// maxDropTracked bounds the sources remembered between two rounds.
const maxDropTracked = 4096

// FlushDrops logs the drop summaries when the interval has passed since the
// last round: one line per source (the busiest first, at most
// MaxDropSources, then one line for the others), so each source gets at
// most one line an interval. It returns the number of lines logged.
func (a *Auditor) FlushDrops(now time.Time) int {
	interval := a.DropInterval
	if interval == 0 {
		interval = time.Minute
	}
	max := a.MaxDropSources
	if max == 0 {
		max = 5
	}
	a.mu.Lock()
	if len(a.drops) == 0 || now.Sub(a.lastRound) < interval {
		a.mu.Unlock()
		return 0
	}
	drops := a.drops
	a.drops, a.lastRound = nil, now
	a.mu.Unlock()
	srcs := make([]netip.Addr, 0, len(drops))
	for s := range drops {
		srcs = append(srcs, s)
	}
	sort.Slice(srcs, func(i, j int) bool {
		if drops[srcs[i]].n != drops[srcs[j]].n {
			return drops[srcs[i]].n > drops[srcs[j]].n
		}
		return srcs[i].Less(srcs[j])
	})
	lines := 0
	var restN uint64
	for i, s := range srcs {
		d := drops[s]
		if i >= max {
			restN += d.n
			continue
		}
		ports := make([]int, 0, len(d.ports))
		for p := range d.ports {
			ports = append(ports, int(p))
		}
		sort.Ints(ports)
		a.Log.Warn("unknocked packets dropped", "src", s.String(), "sampled", d.n, "ports", ports, "interval", interval.String())
		lines++
	}
	if restN > 0 {
		a.Log.Warn("unknocked packets dropped from other sources", "sources", len(srcs)-max, "sampled", restN, "interval", interval.String())
		lines++
	}
	return lines
}

// AdmittedCounts returns the admissions logged so far per user and port.
func (a *Auditor) AdmittedCounts() map[AdmitKey]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[AdmitKey]uint64, len(a.admitted))
	for k, v := range a.admitted {
		out[k] = v
	}
	return out
}
