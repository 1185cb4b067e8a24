package server

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/seqknock/seqknock/totp"
)

// referenceKnocks is the derivation as it was before the cache and the
// workers: one core, a fresh Deriver per key per call.
func referenceKnocks(cfg *Config, now time.Time, from uint64) []Knock {
	return collect(func(fn func(Knock)) { referenceEach(cfg, now, from, fn) })
}

// referenceEach is referenceKnocks handing each knock to fn as it comes.
func referenceEach(cfg *Config, now time.Time, from uint64, fn func(Knock)) {
	window := totp.Window(now, cfg.Period, cfg.Tolerance, cfg.Lookahead)
	ports := userPorts(cfg)
	bound := boundPorts(cfg)
	for _, u := range cfg.Users {
		for ki, key := range u.Keys {
			if !key.ValidAt(now) {
				continue
			}
			d, err := totp.NewDeriver(key.Key, cfg.Realm)
			if err != nil {
				continue
			}
			for _, port := range ports[u.Name] {
				for _, e := range window {
					if e.Counter < from {
						continue
					}
					exp := e.Expires
					if !key.NotAfter.IsZero() && key.NotAfter.Before(exp) {
						exp = key.NotAfter
					}
					for slot := 0; slot < cfg.Slots; slot++ {
						k := Knock{User: u.Name, Key: ki, Port: port, Counter: e.Counter, Slot: uint8(slot), Expires: exp}
						if bound[port] {
							k.ISN, k.SPort = d.Knock(port, e.Counter, uint8(slot))
						} else {
							k.ISN = d.ISN(port, e.Counter, uint8(slot))
						}
						fn(k)
					}
				}
			}
		}
	}
}

// deriveConfig is n users on port 22 (all) and 2222 (every third user,
// bind_source_port); every fifth user has a second key, every seventh
// an expired one, every eleventh one that ends inside the window.
func deriveConfig(n, slots int, realm string, now time.Time) *Config {
	c := &Config{Period: totp.DefaultPeriod, Tolerance: 1, Lookahead: 1, Slots: slots, Realm: realm, Table: "seqknock", CtMarkBit: 23,
		Services: []Service{{Port: 22}, {Port: 2222, BindSourcePort: true}}}
	key := func(i, j int) []byte { return []byte(fmt.Sprintf("key-%08d-%02d-0123456789abcdef", i, j)[:32]) }
	for i := 0; i < n; i++ {
		u := User{Name: fmt.Sprintf("u%d", i), Keys: []UserKey{{File: "k", Key: key(i, 0)}}}
		switch {
		case i%7 == 3:
			u.Keys = append([]UserKey{{File: "old", Key: key(i, 1), NotAfter: now.Add(-time.Minute)}}, u.Keys...)
		case i%11 == 4:
			u.Keys[0].NotAfter = now.Add(10 * time.Second)
		case i%5 == 1:
			u.Keys = append(u.Keys, UserKey{File: "new", Key: key(i, 2)})
		}
		c.Users = append(c.Users, u)
		if i%3 == 0 {
			c.Services[1].Users = append(c.Services[1].Users, u.Name)
		}
	}
	return c
}

func collect(f func(func(Knock))) []Knock {
	var out []Knock
	f(func(k Knock) { out = append(out, k) })
	return out
}

// TestDeriveParallelSame: the workers give the same knocks in the same
// order as the one-core derivation with fresh Derivers, for any number of
// workers and chunk size, from the whole window or its newest counter.
func TestDeriveParallelSame(t *testing.T) {
	now := time.Unix(1_800_000_007, 0)
	for _, tc := range []struct {
		users, slots int
		realm        string
	}{{1, 4, ""}, {13, 1, "lab"}, {300, 4, ""}, {700, 2, "x"}} {
		cfg := deriveConfig(tc.users, tc.slots, tc.realm, now)
		end := WindowEnd(cfg, now)
		for _, from := range []uint64{0, end} {
			want := referenceKnocks(cfg, now, from)
			if len(want) == 0 {
				t.Fatalf("%d users: no knocks", tc.users)
			}
			got := collect(func(fn func(Knock)) { eachKnockFrom(cfg, now, from, fn) })
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("%d users from %d, eachKnockFrom (-want +got):\n%s", tc.users, from, diff)
			}
			for _, workers := range []int{1, 2, 3, 8} {
				for _, chunk := range []int{1, 5, 128} {
					got := collect(func(fn func(Knock)) { deriveKnocks(cfg, now, from, workers, chunk, 0, fn) })
					if diff := cmp.Diff(want, got); diff != "" {
						t.Fatalf("%d users from %d, %d workers, chunk %d (-want +got):\n%s", tc.users, from, workers, chunk, diff)
					}
				}
			}
		}
	}
}

// TestDeriveKeyChanged: a key changed in place or replaced, or a changed
// realm, never derives with the Deriver of the old key.
func TestDeriveKeyChanged(t *testing.T) {
	now := time.Unix(1_800_000_007, 0)
	cfg := deriveConfig(300, 4, "lab", now)
	check := func(what string) {
		t.Helper()
		for _, workers := range []int{1, 2} {
			got := collect(func(fn func(Knock)) { deriveKnocks(cfg, now, 0, workers, 7, 0, fn) })
			if diff := cmp.Diff(referenceKnocks(cfg, now, 0), got); diff != "" {
				t.Fatalf("%s, %d workers (-want +got):\n%s", what, workers, diff)
			}
		}
	}
	check("first")
	cfg.Users[0].Keys[0].Key[5] ^= 1
	check("key changed in place")
	cfg.Users[9].Keys[0].Key = []byte("another-key-of-32-bytes-0123456789")[:32]
	check("key replaced")
	cfg.Realm = "other"
	check("realm changed")
	cfg.Users = cfg.Users[1:] // every key moves to another cache entry
	check("users shifted")
}

// TestDeriveConcurrent: two derivations of the same config at once (a sync
// and a status) share the cached Derivers safely (run with -race).
func TestDeriveConcurrent(t *testing.T) {
	now := time.Unix(1_800_000_007, 0)
	cfg := deriveConfig(300, 4, "", now)
	want := referenceKnocks(cfg, now, 0)
	var wg sync.WaitGroup
	got := make([][]Knock, 3)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = collect(func(fn func(Knock)) { deriveKnocks(cfg, now, 0, 2, 16, 0, fn) })
		}()
	}
	wg.Wait()
	for i := range got {
		if diff := cmp.Diff(want, got[i]); diff != "" {
			t.Fatalf("derivation %d (-want +got):\n%s", i, diff)
		}
	}
}

// BenchmarkDeriveRotation10kUsers derives a rotation's knocks at 10,000
// users on ports 22 and 2222 with the defaults (the newest counter: 80,000
// knocks) three ways in the same run: as before (one core, a fresh Deriver
// per key: the baseline), with the cached Derivers on one core, and as the
// daemon does (cached, GOMAXPROCS workers). It prints each one's time and
// the ratios to the baseline.
func BenchmarkDeriveRotation10kUsers(b *testing.B) {
	now := time.Unix(1_800_000_007, 0)
	cfg := &Config{Period: totp.DefaultPeriod, Tolerance: 1, Slots: totp.DefaultSlots, Table: "seqknock", CtMarkBit: 23,
		Services: []Service{{Port: 22}, {Port: 2222}}}
	for i := 0; i < 10000; i++ {
		cfg.Users = append(cfg.Users, User{Name: fmt.Sprintf("u%d", i), Keys: []UserKey{{Key: []byte(fmt.Sprintf("user-%011d-key-material", i))[:32]}}})
	}
	from := WindowEnd(cfg, now)
	var sink uint32
	fn := func(k Knock) { sink ^= k.ISN }
	ways := []struct {
		name string
		run  func()
	}{
		{"fresh-sequential-baseline", func() { referenceEach(cfg, now, from, fn) }},
		{"cached-sequential", func() { deriveKnocks(cfg, now, from, 1, deriveChunk, deriveMinKeys, fn) }},
		{"cached-parallel", func() { eachKnockFrom(cfg, now, from, fn) }},
	}
	took := map[string]time.Duration{}
	for _, w := range ways {
		b.Run(w.name, func(b *testing.B) {
			w.run() // the cache warm, as in the daemon after its first sync
			start := time.Now()
			for i := 0; i < b.N; i++ {
				w.run()
			}
			d := time.Since(start) / time.Duration(b.N)
			b.ReportMetric(float64(d.Microseconds())/1000, "ms/rotation")
			took[w.name] = d
		})
	}
	if base := took["fresh-sequential-baseline"]; base > 0 {
		b.Logf("80,000 knocks: baseline %v, cached one core %v (%.2fx), cached %d workers %v (%.2fx)",
			base.Round(100*time.Microsecond), took["cached-sequential"].Round(100*time.Microsecond), base.Seconds()/took["cached-sequential"].Seconds(),
			runtimeProcs(), took["cached-parallel"].Round(100*time.Microsecond), base.Seconds()/took["cached-parallel"].Seconds())
	}
	_ = sink
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
