package server

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/seqknock/seqknock/totp"
)

// DefaultNearMissPeriods is how many periods either side of now the
// near-miss index covers (near_miss_periods): ±20 periods of 30 s is ±10
// minutes of clock skew.
const (
	DefaultNearMissPeriods = 10
	MaxNearMissPeriods     = 120
	// MaxDefaultNearMissKnocks bounds the index a config gets when it does
	// not set near_miss_periods: 1,048,576 knocks, 8 MiB. A config whose
	// knocks of ±DefaultNearMissPeriods would take more gets fewer
	// periods, down to 0 (off): the memory guards of a large daemon
	// (64 MiB at 10,000 users, 128 MiB at 50,000) hold with the default.
	MaxDefaultNearMissKnocks = 1 << 20
)

// The causes of a near miss.
const (
	CauseClock  = "clock"  // a knock of a counter outside the window
	CausePort   = "port"   // a knock of another protected port
	CauseReplay = "replay" // a knock already spent, sent again
	// CauseExpired is a knock of a key past its not_after (any counter, any
	// port of the user's).
	CauseExpired = "expired"
)

// NearMissKey counts near misses: a user and a cause.
type NearMissKey struct {
	User  string
	Cause string
}

// NearMissResult is what a dropped SYN was, when it was a knock of a user's
// that missed.
type NearMissResult struct {
	User  string
	Cause string
	// Port is the port the knock was made for, Dport the one it went to.
	Port, Dport uint16
	// Periods is the knock's counter minus the current one (for a clock
	// miss), Skew the same in time: how far the client's clock is ahead
	// (negative: behind).
	Periods int64
	Skew    time.Duration
	Src     netip.Addr
	// KeyFile is the key's file, for an expired key.
	KeyFile string
}

// Message is the one log line that says what happened.
func (r NearMissResult) Message() string {
	switch r.Cause {
	case CausePort:
		return fmt.Sprintf("%s used a port %d knock on port %d", r.User, r.Port, r.Dport)
	case CauseReplay:
		return fmt.Sprintf("a spent knock of %s came again from %s (a replay, or a second client using the same key)", r.User, r.Src)
	case CauseExpired:
		return fmt.Sprintf("%s knocked with a key past its not_after (%s)", r.User, r.KeyFile)
	}
	n, dir, clk := r.Periods, "early", "ahead"
	if n < 0 {
		n, dir, clk = -n, "late", "behind"
	}
	return fmt.Sprintf("%s knocked %d periods %s: the client's clock is about %s %s", r.User, n, dir, skewText(r.Skew), clk)
}

// skewText is |d| in whole minutes, or seconds below a minute and a half.
func skewText(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	if d < 90*time.Second {
		return fmt.Sprintf("%d s", int(d.Round(time.Second)/time.Second))
	}
	return fmt.Sprintf("%d min", int(math.Round(d.Minutes())))
}

// nearRef is what made a group of knocks: a user's key on a port.
type nearRef struct {
	user uint32
	key  uint16
	port uint16
}

// nearEntry is one knock of a counter: its ISN and ref*slots+slot. 8 bytes.
type nearEntry struct {
	isn uint32
	ref uint32
}

type nearCounter struct {
	counter uint64
	knocks  []nearEntry // sorted by isn
}

// nearIndex maps the ISNs of every user's knocks, for every port the user
// may knock on and every counter within ±periods of now, to what made
// them. It is advanced one counter at a time (a rotation derives one
// counter's knocks: users × keys × ports × slots HMACs) and rebuilt
// whole only for a new config. It is not safe for concurrent use.
type nearIndex struct {
	cfg      *Config
	periods  int
	refs     []nearRef
	counters []nearCounter // sorted by counter
}

// advance makes ix cover the counters within ±periods of now's under cfg:
// the counters that left are dropped, the new ones derived. A config
// other than the last starts anew.
func (ix *nearIndex) advance(cfg *Config, now time.Time) {
	if ix.cfg != cfg {
		ix.cfg, ix.periods, ix.counters = cfg, cfg.NearMissPeriods, nil
		ix.refs = ix.refs[:0]
		ports := userPorts(cfg)
		for u, user := range cfg.Users {
			for k := range user.Keys {
				for _, p := range ports(user.Name) {
					ix.refs = append(ix.refs, nearRef{user: uint32(u), key: uint16(k), port: p})
				}
			}
		}
	}
	if ix.periods <= 0 {
		ix.counters = nil
		return
	}
	c := totp.Counter(now, cfg.Period)
	lo, hi := c-min(c, uint64(ix.periods)), c+uint64(ix.periods)
	ix.counters = slices.DeleteFunc(ix.counters, func(t nearCounter) bool { return t.counter < lo || t.counter > hi })
	have := map[uint64]bool{}
	for _, t := range ix.counters {
		have[t.counter] = true
	}
	for k := lo; k <= hi; k++ {
		if !have[k] {
			ix.counters = append(ix.counters, ix.derive(k))
		}
	}
	slices.SortFunc(ix.counters, func(x, y nearCounter) int { return cmp.Compare(x.counter, y.counter) })
}

// derive computes one counter's knocks, sorted by ISN.
func (ix *nearIndex) derive(counter uint64) nearCounter {
	cfg := ix.cfg
	slots := cfg.Slots
	out := nearCounter{counter: counter, knocks: make([]nearEntry, 0, len(ix.refs)*slots)}
	d, err := totp.NewDeriver(make([]byte, totp.MinKeyLen), cfg.Realm)
	if err != nil {
		return out // LoadConfig checked the realm
	}
	lastUser, lastKey := -1, -1
	for r, ref := range ix.refs {
		if int(ref.user) != lastUser || int(ref.key) != lastKey {
			if d.SetKey(cfg.Users[ref.user].Keys[ref.key].Key) != nil {
				continue
			}
			lastUser, lastKey = int(ref.user), int(ref.key)
		}
		for s := 0; s < slots; s++ {
			out.knocks = append(out.knocks, nearEntry{isn: d.ISN(ref.port, counter, uint8(s)), ref: uint32(r*slots + s)})
		}
	}
	slices.SortFunc(out.knocks, func(x, y nearEntry) int { return cmp.Compare(x.isn, y.isn) })
	return out
}

// nearMissBytes is about what the near-miss index of cfg takes at now:
// one more counter than it keeps, during a rotation, and each counter's
// entries, 8 bytes each.
func nearMissBytes(cfg *Config, now time.Time) int64 {
	if cfg.NearMissPeriods == 0 {
		return 0
	}
	perCounter := int64(knockCount(cfg, now) / len(totp.Window(now, cfg.Period, cfg.Tolerance, cfg.Lookahead)))
	return 8 * perCounter * int64(2*cfg.NearMissPeriods+2)
}

// entries is how many knocks the index holds.
func (ix *nearIndex) entries() int {
	n := 0
	for _, t := range ix.counters {
		n += len(t.knocks)
	}
	return n
}

// diagnose says which user's knock the SYN from src to dport with
// sequence number isn was and why it missed, at now; spent says that the
// daemon holds the knock (dport, isn) as spent. Of several knocks with
// that ISN, a knock for dport is preferred, then the counter nearest now.
// It says nothing for a SYN that is no knock of the index.
func (ix *nearIndex) diagnose(dport uint16, isn uint32, src netip.Addr, now time.Time, spent bool) (NearMissResult, bool) {
	if ix.cfg == nil || len(ix.counters) == 0 {
		return NearMissResult{}, false
	}
	cfg := ix.cfg
	c := int64(totp.Counter(now, cfg.Period))
	best, bestScore, found := NearMissResult{}, int64(math.MaxInt64), false
	for _, t := range ix.counters {
		ks := t.knocks
		i, _ := slices.BinarySearchFunc(ks, isn, func(e nearEntry, v uint32) int { return cmp.Compare(e.isn, v) })
		for ; i < len(ks) && ks[i].isn == isn; i++ {
			ref := ix.refs[ks[i].ref/uint32(cfg.Slots)]
			delta := int64(t.counter) - c
			score := max(delta, -delta)
			if ref.port != dport {
				score += 1 << 32 // another port's knock only when no knock of this port matches
			}
			if score >= bestScore {
				continue
			}
			r := NearMissResult{User: cfg.Users[ref.user].Name, Port: ref.port, Dport: dport, Src: src}
			inWindow := delta >= -int64(cfg.Tolerance) && delta <= int64(cfg.Tolerance+cfg.Lookahead)
			key := cfg.Users[ref.user].Keys[ref.key]
			switch {
			case !key.ValidAt(now):
				r.Cause, r.KeyFile = CauseExpired, key.File
			case ref.port != dport:
				r.Cause = CausePort
			case spent || inWindow:
				// A knock of this port valid now, yet dropped: the kernel
				// holds it as used.
				r.Cause = CauseReplay
			default:
				r.Cause, r.Periods = CauseClock, delta
				// To the middle of the knock's period: how far ahead
				// (negative: behind) the client's clock is.
				r.Skew = totp.Start(t.counter, cfg.Period).Add(cfg.Period / 2).Sub(now)
			}
			best, bestScore, found = r, score, true
		}
	}
	return best, found
}

// NearMiss diagnoses the sampled dropped SYNs off the packet path: a
// worker goroutine keeps the index current (Update) and matches each
// sample (Sample) against it, logging one line per match and counting it
// per user and cause. A sample that arrives while the worker is busy (a
// rebuild after a reload of many users) waits in a short queue; beyond
// it, samples are dropped.
type NearMiss struct {
	Log *slog.Logger

	once    sync.Once
	updates chan nearUpdate
	samples chan nearSample

	mu     sync.Mutex
	counts map[NearMissKey]uint64
}

type nearUpdate struct {
	cfg *Config
	now time.Time
}

type nearSample struct {
	src   netip.Addr
	dport uint16
	isn   uint32
	now   time.Time
	spent bool
}

func (n *NearMiss) init() {
	n.once.Do(func() {
		n.updates = make(chan nearUpdate, 1)
		n.samples = make(chan nearSample, 64)
	})
}

// Run is the worker: it ends with ctx.
func (n *NearMiss) Run(ctx context.Context) {
	n.init()
	var ix nearIndex
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-n.updates:
			n.advance(&ix, u)
		case s := <-n.samples:
			// An update queued meanwhile comes first: the sample is
			// judged against the config of its time.
			select {
			case u := <-n.updates:
				n.advance(&ix, u)
			default:
			}
			r, ok := ix.diagnose(s.dport, s.isn, s.src, s.now, s.spent)
			if !ok {
				continue
			}
			n.mu.Lock()
			if n.counts == nil {
				n.counts = map[NearMissKey]uint64{}
			}
			n.counts[NearMissKey{r.User, r.Cause}]++
			n.mu.Unlock()
			attrs := []any{"user", r.User, "cause", r.Cause, "src", r.Src.String(), "port", r.Dport}
			if r.Cause == CauseClock {
				attrs = append(attrs, "periods", r.Periods, "skew", r.Skew.Round(time.Second).String())
			}
			if r.Cause == CausePort {
				attrs = append(attrs, "knock_port", r.Port)
			}
			n.Log.Warn("near miss: "+r.Message(), attrs...)
		}
	}
}

// advance moves ix to u, and logs a whole build (a new config).
func (n *NearMiss) advance(ix *nearIndex, u nearUpdate) {
	rebuild, start := ix.cfg != u.cfg, time.Now()
	ix.advance(u.cfg, u.now)
	if rebuild && u.cfg.NearMissPeriods > 0 {
		n.Log.Info("near-miss index built", "periods", u.cfg.NearMissPeriods, "knocks", ix.entries(),
			"took", time.Since(start).Round(time.Millisecond).String())
	}
}

// Update has the worker cover the counters around now under cfg; only the
// latest update waits, so the caller never blocks.
func (n *NearMiss) Update(cfg *Config, now time.Time) {
	n.init()
	sendLatest(n.updates, nearUpdate{cfg, now})
}

// Sample hands the worker a dropped SYN from src to dport with sequence
// number isn, seen at now; spent says the daemon holds its knock as
// spent. It never blocks.
func (n *NearMiss) Sample(src netip.Addr, dport uint16, isn uint32, now time.Time, spent bool) {
	n.init()
	select {
	case n.samples <- nearSample{src, dport, isn, now, spent}:
	default:
	}
}

// Counts returns the near misses diagnosed so far per user and cause.
func (n *NearMiss) Counts() map[NearMissKey]uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.counts)
}

// nearMissFamily is the metric of the near misses, by user and cause.
func nearMissFamily(counts func() map[NearMissKey]uint64) metric {
	f := metric{"seqknock_near_misses_total", "counter", "Sampled dropped SYNs that were a user's knock that missed, per user and cause (clock: a counter outside the window; port: a knock of another protected port; replay: a knock already spent).", nil}
	if counts == nil {
		return f
	}
	c := counts()
	for _, k := range slices.SortedFunc(maps.Keys(c), func(x, y NearMissKey) int {
		return cmp.Or(cmp.Compare(x.User, y.User), cmp.Compare(x.Cause, y.Cause))
	}) {
		f.samples = append(f.samples, sample{fmt.Sprintf(`{user=%s,cause=%s}`, labelValue(k.User), labelValue(k.Cause)), float64(c[k])})
	}
	return f
}

// defaultNearMissPeriods is near_miss_periods when the config does not
// set it: DefaultNearMissPeriods, or as many periods as keep the index
// within MaxDefaultNearMissKnocks.
func defaultNearMissPeriods(cfg *Config) int {
	perCounter := 0
	ports := userPorts(cfg)
	for _, u := range cfg.Users {
		perCounter += len(u.Keys) * len(ports(u.Name)) * cfg.Slots
	}
	if perCounter == 0 {
		return DefaultNearMissPeriods
	}
	fit := (MaxDefaultNearMissKnocks/perCounter - 1) / 2
	return max(0, min(DefaultNearMissPeriods, fit))
}
