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
	for s, want := range map[float64]string{0.044: "0.044 s", 439: "7.3 min", 24_800: "6.9 h", 2.48e7: "287 days", 2.48e10: "786 years", 2.48e12: "7.9e+04 years", math.Inf(1): "never"} {
		if got := Humanize(s); got != want {
			t.Errorf("Humanize(%g) = %q, want %q", s, got, want)
		}
	}
}
