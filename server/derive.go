package server

import (
	"bytes"
	"runtime"
	"sync"
	"time"

	"github.com/seqknock/seqknock/totp"
)

// deriveChunk is how many keys one worker derives at a time, and
// deriveMinKeys how many keys a config needs before the derivation is
// spread over workers (fewer are done in line: goroutines would cost more
// than they save).
const (
	deriveChunk   = 128
	deriveMinKeys = 256
)

// derivers keeps one totp.Deriver per user key of a Config across syncs,
// so a sync does not set up 10,000 HMAC keys again. An entry is rebuilt
// whenever the key bytes or the realm it was made from differ from the
// config's (a reloaded config has a cache of its own anyway), so a changed
// key never derives with a stale Deriver. It holds key material: it has no
// String and is never logged.
type derivers struct {
	mu      sync.Mutex
	entries []*deriverEntry
}

type deriverEntry struct {
	mu    sync.Mutex // a Deriver is not safe for concurrent use
	key   []byte     // a copy of the key d was made from
	realm string
	d     *totp.Deriver
}

// cacheMu guards the lazy creation of Config.derive: configs are also
// built as literals (tests, benchmarks), without one.
var cacheMu sync.Mutex

// deriverCache returns cfg's cache with room for n keys.
func deriverCache(cfg *Config, n int) []*deriverEntry {
	cacheMu.Lock()
	if cfg.derive == nil {
		cfg.derive = &derivers{}
	}
	c := cfg.derive
	cacheMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.entries) < n {
		c.entries = append(c.entries, &deriverEntry{})
	}
	return c.entries[:n]
}

// deriver returns e's Deriver for key and realm, made anew when e was made
// from other ones; e.mu must be held. nil: the key or realm is invalid.
func (e *deriverEntry) deriver(key []byte, realm string) *totp.Deriver {
	if e.d != nil && e.realm == realm && bytes.Equal(e.key, key) {
		return e.d
	}
	d, err := totp.NewDeriver(key, realm)
	if err != nil {
		e.d, e.key, e.realm = nil, nil, ""
		return nil // LoadConfig checked every key; unreachable
	}
	e.d, e.key, e.realm = d, append([]byte(nil), key...), realm
	return d
}

// keyJob is one unexpired user key to derive the knocks of.
type keyJob struct {
	user  string
	ki    int
	key   UserKey
	entry int // index in the deriver cache: the key's place among all keys
}

// eachKnockFrom is EachKnock for the counters from `from` on only. The
// knocks are derived by GOMAXPROCS workers, a chunk of keys each at a
// time, while fn takes the finished chunks in order: fn sees the same
// knocks in the same order as a derivation on one core.
func eachKnockFrom(cfg *Config, now time.Time, from uint64, fn func(Knock)) {
	deriveKnocks(cfg, now, from, runtime.GOMAXPROCS(0), deriveChunk, deriveMinKeys, fn)
}

// deriveKnocks is eachKnockFrom with workers goroutines deriving chunk keys
// at a time, in line when there are fewer than minKeys keys or one worker.
func deriveKnocks(cfg *Config, now time.Time, from uint64, workers, chunk, minKeys int, fn func(Knock)) {
	window := totp.Window(now, cfg.Period, cfg.Tolerance, cfg.Lookahead)
	var counters []totp.Entry
	for _, e := range window {
		if e.Counter >= from {
			counters = append(counters, e)
		}
	}
	ports := userPorts(cfg)
	bound := boundPorts(cfg)
	var jobs []keyJob
	n := 0
	for _, u := range cfg.Users {
		for ki, key := range u.Keys {
			if key.ValidAt(now) { // expired: its knocks left with their own timeouts
				jobs = append(jobs, keyJob{user: u.Name, ki: ki, key: key, entry: n})
			}
			n++
		}
	}
	cache := deriverCache(cfg, n)
	derive := func(j keyJob, out []Knock) []Knock {
		e := cache[j.entry]
		e.mu.Lock()
		defer e.mu.Unlock()
		d := e.deriver(j.key.Key, cfg.Realm)
		if d == nil {
			return out
		}
		for _, port := range ports[j.user] {
			for _, c := range counters {
				// A key's knocks end at its not_after, in the kernel.
				exp := c.Expires
				if !j.key.NotAfter.IsZero() && j.key.NotAfter.Before(exp) {
					exp = j.key.NotAfter
				}
				for slot := 0; slot < cfg.Slots; slot++ {
					k := Knock{User: j.user, Key: j.ki, Port: port, Counter: c.Counter, Slot: uint8(slot), Expires: exp}
					if bound[port] {
						k.ISN, k.SPort = d.Knock(port, c.Counter, uint8(slot))
					} else {
						k.ISN = d.ISN(port, c.Counter, uint8(slot))
					}
					out = append(out, k)
				}
			}
		}
		return out
	}
	if workers <= 1 || len(jobs) < minKeys || len(jobs) <= chunk {
		var buf []Knock
		for _, j := range jobs {
			buf = derive(j, buf[:0])
			for _, k := range buf {
				fn(k)
			}
		}
		return
	}
	parallel(jobs, workers, chunk, derive, fn)
}

// parallel derives jobs in chunks of chunk keys on workers goroutines and
// gives fn the chunks' knocks in the jobs' order, each chunk as soon as it
// and all before it are done: fn (the batch's encoding) runs meanwhile.
// At most 2*workers chunks are derived ahead of fn.
func parallel(jobs []keyJob, workers, chunk int, derive func(keyJob, []Knock) []Knock, fn func(Knock)) {
	nchunks := (len(jobs) + chunk - 1) / chunk
	done := make([]chan []Knock, nchunks)
	for i := range done {
		done[i] = make(chan []Knock, 1)
	}
	// The buffers are the tokens that bound the lookahead: a worker
	// takes one before it claims a chunk, fn's side gives it back.
	free := make(chan []Knock, 2*workers)
	for i := 0; i < cap(free); i++ {
		free <- nil
	}
	stop := make(chan struct{})
	defer close(stop) // fn panicked or all is taken: the workers end
	var mu sync.Mutex
	next := 0
	for w := 0; w < workers; w++ {
		go func() {
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
				buf = buf[:0]
				for _, j := range jobs[i*chunk : min((i+1)*chunk, len(jobs))] {
					buf = derive(j, buf)
				}
				done[i] <- buf
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
