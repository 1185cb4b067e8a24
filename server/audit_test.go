package server

import (
	"cmp"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

func TestAuditorAdmitted(t *testing.T) {
	c, err := ParseConfig("/etc/seqknock/seqknockd.toml", []byte(goodConfig), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	log := &netnstest.Buffer{}
	a := &Auditor{Log: slog.New(slog.NewTextHandler(log, nil))}
	fk := &fakeKernel{}
	now := time.Unix(999_999, 0) // counter 499999 with period 2s
	if _, err := a.Record(c, now, syncOf(fk.kernel(), c, now)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second) // counter 500000: 499998 is the one before the window
	if _, err := a.Record(c, now, syncOf(fk.kernel(), c, now)); err != nil {
		t.Fatal(err)
	}
	bob, _ := totp.NewDeriver(c.Users[1].Keys[0].Key, "lab")
	alice, _ := totp.NewDeriver(c.Users[0].Keys[0].Key, "lab")
	src := netip.MustParseAddrPort("198.18.1.2:40000")
	a.Admitted(src, netip.MustParseAddrPort("198.18.1.1:2222"), bob.ISN(2222, 500001, 3))
	a.Admitted(netip.MustParseAddrPort("[2001:db8::2]:50000"), netip.MustParseAddrPort("[2001:db8::1]:22"), alice.ISN(22, 499998, 0)) // the previous window's first counter
	a.Admitted(src, netip.MustParseAddrPort("198.18.1.1:22"), 12345)
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	for i, want := range []string{
		`level=INFO msg="knock admitted" user=bob port=2222 src=198.18.1.2 sport=40000 counter=500001 slot=3`,
		`level=INFO msg="knock admitted" user=alice port=22 src=2001:db8::2 sport=50000 counter=499998 slot=0`,
		`level=WARN msg="knock admitted, but not one of the current config's`,
	} {
		if i >= len(lines) || !strings.Contains(lines[i], want) {
			t.Errorf("line %d: want %q in\n%s", i, want, log)
		}
	}
	if got := a.AdmittedCounts(); got[AdmitKey{"bob", 2222}] != 1 || got[AdmitKey{"alice", 22}] != 1 || len(got) != 2 {
		t.Errorf("counts %v", got)
	}
	// Five periods later: the window has moved; an old knock is pruned,
	// a new one is found.
	later := now.Add(10 * time.Second)
	if _, err := a.Record(c, later, syncOf(fk.kernel(), c, later)); err != nil {
		t.Fatal(err)
	}
	// (alice 22, bob 22, bob 2222) x 3 counters x 4 slots: the window; the
	// counter before it was never installed (the clock jumped 5 periods).
	if n := a.knockCount(); n != 3*3*4 {
		t.Errorf("%d knocks in the tables", n)
	}
	before := len(log.String())
	a.Admitted(src, netip.MustParseAddrPort("198.18.1.1:22"), alice.ISN(22, 500006, 1))
	a.Admitted(src, netip.MustParseAddrPort("198.18.1.1:22"), alice.ISN(22, 500000, 1))
	if after := log.String()[before:]; !strings.Contains(after, "user=alice port=22") || !strings.Contains(after, "counter=500006 slot=1") ||
		!strings.Contains(after, "not one of the current config's") {
		t.Errorf("after a later sync: %s", after)
	}
}

// TestAuditorDropSummary: 10,000 sampled drops from one source and a few
// from many make at most one line per source a minute, the busiest first,
// capped, with one line for the rest.
func TestAuditorDropSummary(t *testing.T) {
	log := &netnstest.Buffer{}
	a := &Auditor{Log: slog.New(slog.NewTextHandler(log, nil)), MaxDropSources: 3}
	t0 := time.Unix(1_000_000, 0)
	flood := netip.MustParseAddr("198.18.9.9")
	for i := 0; i < 10_000; i++ {
		a.Dropped(flood, uint16(22+i%2))
	}
	if n := a.FlushDrops(t0); n != 1 {
		t.Errorf("first round: %d lines", n)
	}
	for i := 0; i < 10_000; i++ {
		a.Dropped(flood, 22)
	}
	if n := a.FlushDrops(t0.Add(30 * time.Second)); n != 0 {
		t.Errorf("a second round within the minute: %d lines", n)
	}
	for i := 0; i < 10; i++ {
		a.Dropped(netip.AddrFrom4([4]byte{198, 18, 10, byte(i)}), 22)
	}
	if n := a.FlushDrops(t0.Add(time.Minute)); n != 4 {
		t.Errorf("third round: %d lines, want 3 sources and the rest", n)
	}
	out := log.String()
	if strings.Count(out, "\n") != 5 || !strings.Contains(out, `src=198.18.9.9 sampled=10000 ports="[22 23]"`) ||
		!strings.Contains(out, `src=198.18.9.9 sampled=10000 ports=[22]`) || !strings.Contains(out, "sources=8 sampled=8") {
		t.Errorf("summary:\n%s", out)
	}
	if n := a.FlushDrops(t0.Add(3 * time.Minute)); n != 0 {
		t.Errorf("nothing dropped, yet %d lines", n)
	}
}

// syncOf is the sync Record runs in the daemon, on k.
func syncOf(k Kernel, cfg *Config, now time.Time) func(func(Knock)) (nftgen.Result, error) {
	return func(onKnock func(Knock)) (nftgen.Result, error) {
		return SyncKeepingWith(k, cfg, now, &Spent{}, onKnock)
	}
}

// knockCount returns the knocks in the tables (for tests).
func (a *Auditor) knockCount() int {
	n := 0
	for _, c := range a.who {
		n += len(c.knocks)
	}
	return n
}

// knockEntries is n knock entries with random ISNs on three ports, every
// tenth a copy of an earlier one's port and ISN (two users' knocks that
// collide).
func knockEntries(n int, seed uint64) []knockEntry {
	r := rand.New(rand.NewPCG(seed, 3))
	ports := []uint16{22, 2222, 65535}
	out := make([]knockEntry, n)
	for i := range out {
		out[i] = knockEntry{isn: r.Uint32(), port: ports[r.IntN(3)], slot: uint8(i % 4), user: uint32(i)}
		if i%10 == 9 {
			j := r.IntN(i)
			out[i].isn, out[i].port = out[j].isn, out[j].port
		}
	}
	return out
}

// TestSortKnocks: the radix sort gives what a stable comparison sort by
// sortKey gives, colliding knocks in their first order.
func TestSortKnocks(t *testing.T) {
	var scratch []knockEntry // reused, as Record does: big, then small
	for _, n := range []int{0, 1, 2, 17, 80000, 5000} {
		got := knockEntries(n, uint64(n))
		want := slices.Clone(got)
		slices.SortStableFunc(want, func(x, y knockEntry) int { return cmp.Compare(x.sortKey(), y.sortKey()) })
		scratch = sortKnocks(got, scratch)
		if !slices.Equal(got, want) {
			t.Fatalf("%d knocks: radix sort differs from a stable sort", n)
		}
	}
}

// BenchmarkSortKnocks sorts a rotation's 80,000 knock entries (10,000
// users) as Auditor.Record does, against the baseline in the same run:
// the comparison sort it made before. It prints the ratio of their times.
func BenchmarkSortKnocks(b *testing.B) {
	in := knockEntries(80000, 1)
	buf := make([]knockEntry, len(in))
	times := map[string]time.Duration{}
	for _, v := range []struct {
		name string
		sort func([]knockEntry)
	}{
		{"comparison-baseline", func(ks []knockEntry) {
			slices.SortFunc(ks, func(x, y knockEntry) int { return cmp.Compare(x.sortKey(), y.sortKey()) })
		}},
		{"radix", func(ks []knockEntry) { sortKnocks(ks, nil) }},
	} {
		b.Run(v.name, func(b *testing.B) {
			var spent time.Duration
			for i := 0; i < b.N; i++ {
				copy(buf, in)
				start := time.Now()
				v.sort(buf)
				spent += time.Since(start)
			}
			times[v.name] = spent / time.Duration(b.N)
			b.ReportMetric(float64(times[v.name].Microseconds())/1000, "ms/sort")
		})
	}
	if base := times["comparison-baseline"]; base > 0 {
		b.Logf("80,000 knocks: comparison sort %v, radix sort %v, ratio %.2f", base, times["radix"], times["radix"].Seconds()/base.Seconds())
	}
}
