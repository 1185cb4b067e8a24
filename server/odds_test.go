package server

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestPortOddsAndRates(t *testing.T) {
	users := ""
	for i := 0; i < 1000; i++ {
		users += fmt.Sprintf("[[user]]\nname = \"u%d\"\nkey_file = \"k%d\"\n", i, i)
	}
	text := "[[service]]\nport = 22\n[[service]]\nport = 2222\nusers = [\"u0\"]\n" + users
	cfg, err := ParseConfig("x.toml", []byte(text), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	odds := PortOdds(cfg, now)
	// Defaults: tolerance 1, lookahead 0 (3 counters), 4 slots: 12 knocks
	// a user.
	if len(odds) != 2 || odds[0].Valid != 12_000 || odds[1].Valid != 12 {
		t.Fatalf("odds %+v", odds)
	}
	if p := odds[1].PerSYN; math.Abs(p-12/math.Pow(2, 32)) > 1e-15 {
		t.Errorf("one user: %g per SYN", p)
	}
	if n := odds[1].SYNs50; math.Abs(n-2.48e8)/2.48e8 > 0.01 {
		t.Errorf("one user: 50%% after %g SYNs", n)
	}
	// With bind_source_port the SYN must hit the knock's source port too.
	bound, err := ParseConfig("x.toml", []byte(strings.Replace(text, "port = 2222\n", "port = 2222\nbind_source_port = true\n", 1)), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	b := PortOdds(bound, now)
	if b[0].Bits != 32 || b[1].Bits != 48 || math.Abs(b[1].PerSYN-12/math.Pow(2, 32)/64512) > 1e-20 || b[0].PerSYN != odds[0].PerSYN {
		t.Errorf("bound: %+v", b)
	}
	for s, want := range map[float64]string{0.044: "0.044 s", 439: "7.3 min", 24_800: "6.9 h", 1.23e5: "1.4 days", 2.48e7: "287 days", 2.48e10: "786 years", 2.48e12: "7.9e+04 years", math.Inf(1): "never"} {
		if got := Humanize(s); got != want {
			t.Errorf("Humanize(%g) = %q, want %q", s, got, want)
		}
	}
}

// TestGuessRate checks the guess rates the odds are figured at: one source
// gets guess_limit plus the locked-out sources' lookup budget; many
// sources get the global cap plus one lookup per source and lockout plus
// the budget; without limits, the sender's bandwidth.
func TestGuessRate(t *testing.T) {
	svc := "[[service]]\nport = 22\n[[user]]\nname = \"u\"\nkey_file = \"k\"\n"
	for _, c := range []struct {
		settings  string
		one, many float64
	}{
		{"", 10 + 2000, 1000 + 10_000 + 2000},
		{"lockout_lookup_limit = \"0\"\n", 10, 11_000},           // the strict order: no lookup when locked out
		{"lockout_lookup_limit = \"60/minute\"\n", 11, 11_001},   // the unit counts
		{"guess_global_limit = \"0\"\n", 2010, 10*10_000 + 2000}, // no cap: each source its guess_limit
		{"guess_limit = \"0\"\n", 1000 + 1 + 2000, 13_000},       // the cap alone locks out
		{"guess_limit = \"0\"\nguess_global_limit = \"0\"\n", UnlimitedRate, UnlimitedRate},
		{"lockout_lookup_limit = \"1000000/second\"\n", UnlimitedRate, UnlimitedRate}, // never above the bandwidth
	} {
		cfg, err := ParseConfig("x.toml", []byte(c.settings+svc), fakeKeys)
		if err != nil {
			t.Fatal(err)
		}
		if one, many := GuessRate(cfg, 1), GuessRate(cfg, ManySources); math.Abs(one-c.one) > 1e-9 || math.Abs(many-c.many) > 1e-9 {
			t.Errorf("%q: %g from one source, %g from %d; want %g, %g", c.settings, one, many, ManySources, c.one, c.many)
		}
	}
	// The README's figures: a 1-user and a 10,000-user port, the default
	// limits, one source and 10,000.
	cfg, err := ParseConfig("x.toml", []byte(svc), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	syns1, syns10k := math.Ln2/(12/math.Pow(2, 32)), math.Ln2/(120_000/math.Pow(2, 32))
	for _, c := range []struct {
		syns    float64
		sources int
		want    string
	}{
		{syns1, 1, "1.4 days"}, {syns1, ManySources, "5.3 h"}, {syns10k, 1, "12 s"}, {syns10k, ManySources, "1.9 s"},
	} {
		if got := Humanize(c.syns / GuessRate(cfg, c.sources)); got != c.want {
			t.Errorf("%g SYNs from %d sources: %s, want %s", c.syns, c.sources, got, c.want)
		}
	}
}
