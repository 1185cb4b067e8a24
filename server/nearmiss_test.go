package server

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seqknock/seqknock/totp"
)

// nearConfig is a config of n users with keys of their own, on ports 22
// (everyone) and 2222 (user0 only).
func nearConfig(n, periods int) *Config {
	cfg := &Config{Period: 30 * time.Second, Tolerance: 1, Slots: 4, Realm: "r", NearMissPeriods: periods}
	for i := 0; i < n; i++ {
		key := bytes.Repeat([]byte{byte(i), byte(i >> 8), 7}, 11)
		cfg.Users = append(cfg.Users, User{Name: fmt.Sprintf("user%d", i), Keys: []UserKey{{File: "k", Key: key}}})
	}
	cfg.Services = []Service{{Port: 22}, {Port: 2222, Users: []string{"user0"}}}
	return cfg
}

func knockOf(t *testing.T, cfg *Config, user int, port uint16, counter uint64, slot uint8) uint32 {
	t.Helper()
	d, err := totp.NewDeriver(cfg.Users[user].Keys[0].Key, cfg.Realm)
	if err != nil {
		t.Fatal(err)
	}
	return d.ISN(port, counter, slot)
}

func TestNearMissDiagnose(t *testing.T) {
	cfg := nearConfig(50, 20)
	now := time.Unix(1_800_000_015, 0) // the middle of a period
	c := totp.Counter(now, cfg.Period)
	src := netip.MustParseAddr("198.18.0.9")
	cfg.Users[11].Keys[0].NotAfter = now.Add(-time.Hour)
	cfg.Users[11].Keys[0].File = "old.key"
	var ix nearIndex
	ix.advance(cfg, now)
	if got, want := ix.entries(), 41*(50+1)*4; got != want {
		t.Fatalf("index holds %d knocks, want %d", got, want)
	}
	for _, tc := range []struct {
		name        string
		user        int
		port, dport uint16
		counter     uint64
		spent       bool
		want        string
	}{
		{"clock ahead", 7, 22, 22, c + 4, false, "user7 knocked 4 periods early: the client's clock is about 2 min ahead"},
		{"clock behind", 9, 22, 22, c - 20, false, "user9 knocked 20 periods late: the client's clock is about 10 min behind"},
		{"clock just ahead", 9, 22, 22, c + 2, false, "user9 knocked 2 periods early: the client's clock is about 60 s ahead"},
		{"other port", 0, 22, 2222, c, false, "user0 used a port 22 knock on port 2222"},
		{"other port, 2222 to 22", 0, 2222, 22, c + 1, false, "user0 used a port 2222 knock on port 22"},
		{"replay in window", 3, 22, 22, c, false, "a spent knock of user3 came again from 198.18.0.9"},
		{"replay after the window", 3, 22, 22, c - 2, true, "a spent knock of user3 came again from 198.18.0.9"},
		{"expired key", 11, 22, 22, c, false, "user11 knocked with a key past its not_after (old.key)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isn := knockOf(t, cfg, tc.user, tc.port, tc.counter, 2)
			r, ok := ix.diagnose(tc.dport, isn, src, now, tc.spent)
			if !ok {
				t.Fatal("no diagnosis")
			}
			if !strings.HasPrefix(r.Message(), tc.want) {
				t.Fatalf("got %q, want %q", r.Message(), tc.want)
			}
		})
	}
	// Outside the range, and a random ISN: nothing.
	if r, ok := ix.diagnose(22, knockOf(t, cfg, 1, 22, c+21, 0), src, now, false); ok {
		t.Fatalf("a knock 21 periods out was diagnosed: %s", r.Message())
	}
	if r, ok := ix.diagnose(22, 12345, src, now, false); ok {
		t.Fatalf("a random ISN was diagnosed: %s", r.Message())
	}
	// A port user1 may not knock on is not in the index.
	if r, ok := ix.diagnose(22, knockOf(t, cfg, 1, 2222, c+3, 0), src, now, false); ok {
		t.Fatalf("a knock of a port not the user's was diagnosed: %s", r.Message())
	}
}

func TestNearMissAdvance(t *testing.T) {
	cfg := nearConfig(3, 5)
	now := time.Unix(1_800_000_015, 0)
	var ix nearIndex
	ix.advance(cfg, now)
	first := ix.counters[0].counter
	later := now.Add(3 * cfg.Period)
	ix.advance(cfg, later)
	if len(ix.counters) != 11 || ix.counters[0].counter != first+3 {
		t.Fatalf("after 3 periods: %d counters from %d, want 11 from %d", len(ix.counters), ix.counters[0].counter, first+3)
	}
	// The counters derived on the way agree with a fresh build.
	var fresh nearIndex
	fresh.advance(cfg, later)
	for i := range fresh.counters {
		if fmt.Sprint(fresh.counters[i]) != fmt.Sprint(ix.counters[i]) {
			t.Fatalf("counter %d differs from a fresh build", fresh.counters[i].counter)
		}
	}
	c := totp.Counter(later, cfg.Period)
	if _, ok := ix.diagnose(22, knockOf(t, cfg, 2, 22, c+5, 1), netip.Addr{}, later, false); !ok {
		t.Fatal("a knock of the newest counter is not found")
	}
	// Off: no index.
	off := nearConfig(3, 0)
	ix.advance(off, later)
	if ix.entries() != 0 {
		t.Fatalf("near_miss_periods = 0 keeps %d knocks", ix.entries())
	}
	if _, ok := ix.diagnose(22, knockOf(t, off, 2, 22, c+3, 1), netip.Addr{}, later, false); ok {
		t.Fatal("diagnosed with near_miss_periods = 0")
	}
}

// TestNearMissWorker checks the worker end to end: a sample becomes one
// log line naming the user and a count.
func TestNearMissWorker(t *testing.T) {
	cfg := nearConfig(4, 20)
	now := time.Unix(1_800_000_015, 0)
	var buf syncBuffer
	n := &NearMiss{Log: NewLogger(&buf)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	n.Update(cfg, now)
	n.Sample(netip.MustParseAddr("198.18.0.2"), 22, knockOf(t, cfg, 2, 22, totp.Counter(now, cfg.Period)-4, 0), now, false)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "user2 knocked 4 periods late") {
		if time.Now().After(deadline) {
			t.Fatalf("no near-miss line; log:\n%s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if got := n.Counts()[NearMissKey{"user2", CauseClock}]; got != 1 {
		t.Fatalf("count %d, want 1", got)
	}
	var out bytes.Buffer
	if err := (&Metrics{NearMisses: n.Counts}).Write(&out, now); err != nil {
		t.Fatal(err)
	}
	if want := `seqknock_near_misses_total{user="user2",cause="clock"} 1`; !strings.Contains(out.String(), want) {
		t.Fatalf("metrics lack %s:\n%s", want, out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDefaultNearMissPeriods: a config that does not set near_miss_periods
// gets ±DefaultNearMissPeriods, or as many periods as keep the index
// within MaxDefaultNearMissKnocks; a config that sets it gets what it set.
func TestDefaultNearMissPeriods(t *testing.T) {
	cfg := func(users, ports int) *Config {
		c := &Config{Slots: 4}
		for i := range users {
			c.Users = append(c.Users, User{Name: fmt.Sprint("u", i), Keys: []UserKey{{Key: []byte("k")}}})
		}
		for p := range ports {
			c.Services = append(c.Services, Service{Port: uint16(22 + p)})
		}
		return c
	}
	for _, tc := range []struct{ users, ports, want int }{
		{1, 1, DefaultNearMissPeriods},
		{10_000, 1, DefaultNearMissPeriods}, // 40,000 a counter: 21 counters fit
		{10_000, 2, 6},                      // 80,000 a counter: 13 fit
		{50_000, 1, 2},                      // 200,000: 5 fit
		{50_000, 2, 0},                      // 400,000: 2 fit, not 3
	} {
		if got := defaultNearMissPeriods(cfg(tc.users, tc.ports)); got != tc.want {
			t.Errorf("%d users, %d ports: %d periods, want %d", tc.users, tc.ports, got, tc.want)
		}
		if c := cfg(tc.users, tc.ports); (2*defaultNearMissPeriods(c)+1)*tc.users*tc.ports*4 > MaxDefaultNearMissKnocks && defaultNearMissPeriods(c) > 0 {
			t.Errorf("%d users, %d ports: the index outgrows its bound", tc.users, tc.ports)
		}
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		extra string
		want  int
	}{
		{"", DefaultNearMissPeriods},
		{"near_miss_periods = 20\n", 20},
		{"near_miss_periods = 0\n", 0},
		// 200 ports of 256 slots: 51,200 knocks a counter, 20 counters fit.
		{"slots = 256\n" + manyServices(200), 9},
	} {
		c, err := ParseConfig(filepath.Join(dir, "c.toml"), []byte(tc.extra+"[[service]]\nport = 22\n[[user]]\nname = \"a\"\nkey_file = \"a.key\"\n"), func(string) ([]byte, error) { return []byte("0123456789abcdef0123456789abcdef"), nil })
		if err != nil || c.NearMissPeriods != tc.want {
			t.Errorf("%q: %v periods, %v; want %d", tc.extra, c, err, tc.want)
		}
	}
}

// manyServices is n [[service]] tables, ports 1000 and up.
func manyServices(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "[[service]]\nport = %d\n", 1000+i)
	}
	return b.String()
}
