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
	// The rates: one source at its limit; 10,000 sources, over the global
	// cap, one guess each per lockout; no limits, the sender's bandwidth.
	for _, c := range []struct {
		limit, global string
		sources       int
		want          float64
	}{
		{"10/second", "1000/second", 1, 10},
		{"10/second", "1000/second", 50, 500},        // under the cap
		{"10/second", "1000/second", 10_000, 10_000}, // cap exceeded: a guess per lockout
		{"10/second", "0", 10_000, 100_000},
		{"0", "0", 1, UnlimitedRate},
		{"0", "1000/second", 1, 1000},
		{"600/minute", "0", 1, 10},
	} {
		c2 := *cfg
		c2.Guess.Rate, c2.GuessGlobal.Rate = 0, 0
		if c.limit != "0" {
			fmt.Sscanf(c.limit, "%d/", &c2.Guess.Rate)
			c2.Guess.Unit = "second"
			if strings.HasSuffix(c.limit, "minute") {
				c2.Guess.Unit = "minute"
			}
		}
		if c.global != "0" {
			fmt.Sscanf(c.global, "%d/", &c2.GuessGlobal.Rate)
			c2.GuessGlobal.Unit = "second"
		}
		if got := GuessRate(&c2, c.sources); got != c.want {
			t.Errorf("limit %s, global %s, %d sources: %g guesses/s, want %g", c.limit, c.global, c.sources, got, c.want)
		}
	}
	for s, want := range map[float64]string{0.044: "0.044 s", 439: "7.3 min", 24_800: "6.9 h", 2.48e7: "287 days", 2.48e10: "786 years", 2.48e12: "7.9e+04 years", math.Inf(1): "never"} {
		if got := Humanize(s); got != want {
			t.Errorf("Humanize(%g) = %q, want %q", s, got, want)
		}
	}
}
