package server

import (
	"runtime"
	"sync"
	"time"

	"github.com/seqknock/seqknock/totp"
)

// deriveChunk is how many users one worker derives the knocks of at a
// time, and deriveMinUsers how many users a config needs before the
// derivation is spread over workers (fewer are done in line: goroutines
// would cost more than they save).
const (
	deriveChunk    = 128
	deriveMinUsers = 512
)

// eachKnockFrom is EachKnock for the counters from `from` on only. The
// knocks are derived by GOMAXPROCS workers, a chunk of users each at a
// time, while fn takes the finished chunks in order: fn sees the same
// knocks in the same order as a derivation on one core, and meanwhile (it
// encodes the batch) the next chunks are derived.
func eachKnockFrom(cfg *Config, now time.Time, from uint64, fn func(Knock)) {
	deriveKnocks(cfg, now, from, runtime.GOMAXPROCS(0), deriveChunk, deriveMinUsers, fn)
}

// knockPlan is what deriving a user's knocks needs, worked out once per
// derivation: the window's counters from `from` on, each user's ports and
// which ports bind the source port.
type knockPlan struct {
	cfg      *Config
	now      time.Time
	counters []totp.Entry
	ports    func(user string) []uint16
	bound    map[uint16]bool
}

func newKnockPlan(cfg *Config, now time.Time, from uint64) *knockPlan {
	p := &knockPlan{cfg: cfg, now: now, ports: userPorts(cfg), bound: boundPorts(cfg)}
	for _, e := range totp.Window(now, cfg.Period, cfg.Tolerance, cfg.Lookahead) {
		if e.Counter >= from {
			p.counters = append(p.counters, e)
		}
	}
	return p
}

// deriver returns a Deriver for the config's realm, to be given each
// key in turn (nil: the realm is invalid, which LoadConfig refuses).
func (p *knockPlan) deriver() *totp.Deriver {
	d, err := totp.NewDeriver(make([]byte, totp.MinKeyLen), p.cfg.Realm)
	if err != nil {
		return nil
	}
	return d
}

// user appends the knocks of user u (an index in cfg.Users) to out, in
// the order of its keys, ports, counters and slots, derived with d.
func (p *knockPlan) user(u int, d *totp.Deriver, out []Knock) []Knock {
	user := &p.cfg.Users[u]
	ports := p.ports(user.Name)
	for ki, key := range user.Keys {
		if !key.ValidAt(p.now) {
			continue // expired: its knocks left with their own timeouts
		}
		if d == nil || d.SetKey(key.Key) != nil {
			continue // LoadConfig checked every key and the realm; unreachable
		}
		for _, port := range ports {
			bound := p.bound[port]
			for _, c := range p.counters {
				// A key's knocks end at its not_after, in the kernel.
				exp := c.Expires
				if !key.NotAfter.IsZero() && key.NotAfter.Before(exp) {
					exp = key.NotAfter
				}
				for slot := 0; slot < p.cfg.Slots; slot++ {
					k := Knock{User: user.Name, Key: ki, Port: port, Counter: c.Counter, Slot: uint8(slot), Expires: exp}
					if bound {
						k.ISN, k.SPort = d.Knock(port, c.Counter, uint8(slot))
					} else {
						k.ISN = d.ISN(port, c.Counter, uint8(slot))
					}
					out = append(out, k)
				}
			}
		}
	}
	return out
}

// deriveKnocks is eachKnockFrom with workers goroutines deriving chunk
// users at a time, in line when there are fewer than minUsers users or
// one worker.
func deriveKnocks(cfg *Config, now time.Time, from uint64, workers, chunk, minUsers int, fn func(Knock)) {
	p := newKnockPlan(cfg, now, from)
	n := len(cfg.Users)
	if workers <= 1 || n < minUsers || n <= chunk {
		d := p.deriver()
		var buf []Knock
		for u := range n {
			buf = p.user(u, d, buf[:0])
			for _, k := range buf {
				fn(k)
			}
		}
		return
	}
	nchunks := (n + chunk - 1) / chunk
	parallel(nchunks, workers, func(i int, d *totp.Deriver, out []Knock) []Knock {
		for u := i * chunk; u < min((i+1)*chunk, n); u++ {
			out = p.user(u, d, out)
		}
		return out
	}, p.deriver, fn)
}

// parallel runs derive for chunks 0..nchunks-1 on workers goroutines, each
// with its own Deriver from newDeriver, and gives fn the chunks' knocks in
// order, each chunk as soon as it and all before it are done: fn runs
// meanwhile. At most 2*workers chunks are derived ahead of fn.
func parallel(nchunks, workers int, derive func(int, *totp.Deriver, []Knock) []Knock, newDeriver func() *totp.Deriver, fn func(Knock)) {
	done := make([]chan []Knock, nchunks)
	for i := range done {
		done[i] = make(chan []Knock, 1)
	}
	// The buffers are the tokens that bound the lookahead: a worker
	// takes one before it claims a chunk, fn's side gives it back.
	free := make(chan []Knock, 2*workers)
	for range cap(free) {
		free <- nil
	}
	stop := make(chan struct{})
	defer close(stop) // fn panicked or all is taken: the workers end
	var mu sync.Mutex
	next := 0
	for range workers {
		go func() {
			d := newDeriver()
			for {
				var buf []Knock
				select {
				case buf = <-free:
				case <-stop:
					return
				}
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= nchunks {
					return
				}
				done[i] <- derive(i, d, buf[:0])
			}
		}()
	}
	for i := range done {
		buf := <-done[i]
		for _, k := range buf {
			fn(k)
		}
		free <- buf
	}
}
