package server

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/seqknock/seqknock/totp"
)

// referenceKnocks is the derivation as it was before the re-keyed Deriver
// and the workers: one core, a fresh Deriver per key.
func referenceKnocks(cfg *Config, now time.Time, from uint64) []Knock {
	return collect(func(fn func(Knock)) { referenceEach(cfg, now, from, fn) })
}

// referenceEach is referenceKnocks handing each knock to fn as it comes.
func referenceEach(cfg *Config, now time.Time, from uint64, fn func(Knock)) {
	window := totp.Window(now, cfg.Period, cfg.Tolerance, cfg.Lookahead)
	ports := map[string][]uint16{} // userPorts as it was
	for _, svc := range cfg.Services {
		if len(svc.Users) == 0 {
			for _, u := range cfg.Users {
				ports[u.Name] = append(ports[u.Name], svc.Port)
			}
			continue
		}
		for _, u := range svc.Users {
			ports[u] = append(ports[u], svc.Port)
		}
	}
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

// TestDeriveSame: the re-keyed Deriver and the workers give the same
// knocks in the same order as the one-core derivation with a fresh Deriver
// per key, for any number of workers and chunk size, from the whole window
// or its newest counter.
func TestDeriveSame(t *testing.T) {
	now := time.Unix(1_800_000_007, 0)
	for _, tc := range []struct {
		users, slots int
		realm        string
	}{{1, 4, ""}, {13, 1, "lab"}, {300, 4, ""}, {700, 2, "x"}} {
		cfg := deriveConfig(tc.users, tc.slots, tc.realm, now)
		if tc.users == 13 { // a service open to all after one with a user list
			cfg.Services = append(cfg.Services, Service{Port: 80})
		}
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

// TestDeriveConcurrent: derivations of one config at once (the daemon's
// sync and a status or audit call) do not share a Deriver (-race).
func TestDeriveConcurrent(t *testing.T) {
	now := time.Unix(1_800_000_007, 0)
	cfg := deriveConfig(600, 4, "", now)
	want := referenceKnocks(cfg, now, 0)
	var wg sync.WaitGroup
	errs := make(chan string, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := collect(func(fn func(Knock)) { deriveKnocks(cfg, now, 0, 2, 16, 0, fn) })
			if diff := cmp.Diff(want, got); diff != "" {
				errs <- diff
			}
		}()
	}
	wg.Wait()
	close(errs)
	for d := range errs {
		t.Fatalf("concurrent derivation (-want +got):\n%s", d)
	}
}

// BenchmarkDeriveRotation10kUsers derives a rotation's knocks at 10,000
// users x 2 ports (the newest counter: 80,000 knocks), as the server did
// before (one core, a fresh Deriver per key: the baseline), with one
// re-keyed Deriver on one core, and on GOMAXPROCS workers, in the same
// run, and prints the ratios to the baseline.
func BenchmarkDeriveRotation10kUsers(b *testing.B) {
	cfg := &Config{Period: totp.DefaultPeriod, Tolerance: 1, Slots: totp.DefaultSlots, Table: "seqknock", CtMarkBit: 23,
		Services: []Service{{Port: 22}, {Port: 2222}}}
	for i := range 10000 {
		k := make([]byte, 32)
		rand.Read(k)
		cfg.Users = append(cfg.Users, User{Name: fmt.Sprintf("u%d", i), Keys: []UserKey{{Key: k}}})
	}
	now := time.Unix(1_800_000_007, 0)
	from := WindowEnd(cfg, now)
	times := map[string]time.Duration{}
	for _, v := range []struct {
		name   string
		derive func(fn func(Knock))
	}{
		{"baseline-fresh-deriver", func(fn func(Knock)) { referenceEach(cfg, now, from, fn) }},
		{"rekeyed-one-core", func(fn func(Knock)) { deriveKnocks(cfg, now, from, 1, deriveChunk, deriveMinUsers, fn) }},
		{fmt.Sprintf("rekeyed-%d-workers", runtime.GOMAXPROCS(0)), func(fn func(Knock)) { eachKnockFrom(cfg, now, from, fn) }},
	} {
		b.Run(v.name, func(b *testing.B) {
			n := 0
			start := time.Now()
			for i := 0; i < b.N; i++ {
				v.derive(func(Knock) { n++ })
			}
			times[v.name] = time.Since(start) / time.Duration(b.N)
			b.ReportMetric(float64(n/b.N), "knocks/op")
			b.ReportMetric(float64(times[v.name].Microseconds())/1000, "ms/rotation")
		})
	}
	if base := times["baseline-fresh-deriver"]; base > 0 {
		for name, d := range times {
			b.Logf("%s: %v, %.2fx the baseline's time", name, d.Round(time.Millisecond/10), d.Seconds()/base.Seconds())
		}
	}
}
