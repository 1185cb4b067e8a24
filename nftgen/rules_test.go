package nftgen

import (
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

func TestFingerprintRoundTrip(t *testing.T) {
	for _, bit := range []uint32{1, 1 << 5, 1 << 23, 1 << 31} {
		for _, group := range []uint16{0, 1, 23, 65535} {
			for _, drop := range []uint16{0, 24, 65535} {
				for _, pmark := range []uint32{0, 1, 1 << 24, 1 << 31} {
					r := Rules{MarkBit: bit, PacketMarkBit: pmark, LogGroup: group, DropLogGroup: drop}
					got, ok := parseFingerprint(r.fingerprint())
					if !ok || got != r {
						t.Errorf("mark %#x pmark %#x log %d droplog %d: parsed %+v, %v", bit, pmark, group, drop, got, ok)
					}
				}
			}
		}
	}
}

func TestFingerprintRoundTripLimits(t *testing.T) {
	for name, s := range goldenStates() {
		got, ok := parseFingerprint(s.Rules.fingerprint())
		if !ok || got != s.Rules {
			t.Errorf("%s: %q parsed as %+v, %v", name, s.Rules.fingerprint(), got, ok)
		}
	}
}

func TestParseLimit(t *testing.T) {
	for in, want := range map[string]Limit{
		"0":          {},
		"10/second":  {Rate: 10, Unit: PerSecond},
		"600/minute": {Rate: 600, Unit: PerMinute},
		"1/hour":     {Rate: 1, Unit: PerHour},
	} {
		if got, err := ParseLimit(in); err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10", "0/second", "-1/second", "10/sec", "10/day", "x/second", "10/second/2", "99999999999/second"} {
		if l, err := ParseLimit(in); err == nil {
			t.Errorf("ParseLimit(%q) = %+v, want an error", in, l)
		}
	}
	if got := (Limit{Rate: 600, Unit: PerMinute}).PerSecond(); got != 10 {
		t.Errorf("600/minute is %v a second", got)
	}
}

func TestFingerprintRefusesOthers(t *testing.T) {
	good := string(Rules{MarkBit: 1 << 23}.fingerprint()[2:])
	for _, text := range []string{
		"",
		"seqknock/rules/v0 mark=0x00800000",   // another version
		RulesVersion + " mark=8388608",        // not as String spells it
		RulesVersion + " mark=0x00800000 x=1", // a parameter this version lacks
		RulesVersion + " mark=zz",
		RulesVersion + " mark=0x00800000 log=70000",                     // out of range
		RulesVersion + " mark=0x00800000 log=023",                       // not canonical
		RulesVersion + " log=23 mark=0x00800000",                        // not in order
		RulesVersion + " mark=0x00800000 droplog=24 log=23",             // not in order
		RulesVersion + " mark=0x00800000 guess=10/second",               // no burst
		RulesVersion + " mark=0x00800000 guess=10/second+20",            // no prefixes
		RulesVersion + " mark=0x00800000 prefix=32/64",                  // prefixes without a limit
		RulesVersion + " mark=0x00800000 global=1000/second+5 guess=0",  // not canonical
		RulesVersion + " mark=0x00800000 guess=10/week+20 prefix=32/64", // no such unit
		RulesVersion + " mark=0x00800000 sport=1",                       // sport takes no value
		RulesVersion + " sport mark=0x00800000",                         // not in order
		RulesVersion + " mark=0x00800000 lookup=2000/second",            // no burst
		RulesVersion + " mark=0x00800000 sport lookup=2000/second+2000", // not in order
		"seqknock/rules/v3 mark=0x00800000 log=23",                      // the shape before the raw chain
		RulesVersion,
	} {
		b := userdata.Append(nil, udataRuleFingerprint, []byte(text))
		if r, ok := parseFingerprint(b); ok {
			t.Errorf("%q parsed as %+v", text, r)
		}
	}
	if _, ok := parseFingerprint(userdata.Append(nil, 0, []byte(good))); ok {
		t.Error("a comment TLV parsed as a fingerprint")
	}
	if _, ok := parseFingerprint([]byte{udataRuleFingerprint, 9, 'x'}); ok {
		t.Error("a truncated TLV parsed")
	}
}

// TestRuleTextsAndExpressionsPair checks that every rule has expressions and
// a text, and that the expressions chainRules returns are the
// ones Render's text stands for, in the same order.
func TestRuleTextsAndExpressionsPair(t *testing.T) {
	for name, s := range goldenStates() {
		t.Run(name, func(t *testing.T) { testRulePairs(t, s.Rules) })
	}
}

func testRulePairs(t *testing.T, r Rules) {
	list := r.ruleList()
	n := 0
	for _, ch := range chainSpecs {
		n += len(r.chainRules(ch.name))
	}
	if n != len(list) {
		t.Fatalf("%d rules by chain, %d in the list", n, len(list))
	}
	rendered := Render(State{Table: "t", Ports: []uint16{22}, Rules: r, UsedTimeout: 90 * time.Second}, time.Unix(1_000_000, 0))
	for _, d := range list {
		if len(d.exprs) == 0 || d.text == "" {
			t.Errorf("rule %+v lacks expressions or text", d)
		}
		if !strings.Contains(rendered, "\t\t"+d.text+"\n") {
			t.Errorf("Render lacks %q", d.text)
		}
	}
}

// chainRules returns the expressions of chain's rules, in order.
func (r Rules) chainRules(chain string) [][]expr.Any {
	var out [][]expr.Any
	for _, d := range r.ruleList() {
		if d.chain == chain {
			out = append(out, d.exprs)
		}
	}
	return out
}

// TestLockedOutBudget checks the shape of the lookup budget: with a limit
// on, a locked-out source jumps to lockedout before any knock lookup, and
// lockedout holds one limit (one bucket for all sources, v4 and v6) that
// returns to the lookups within the budget; past it, or with no budget, a
// reset at a reset port and a drop elsewhere.
func TestLockedOutBudget(t *testing.T) {
	budget := Limit{Rate: 2000, Unit: PerSecond, Burst: 2000}
	guess := Limit{Rate: 10, Unit: PerSecond, Burst: 20}
	for _, tc := range []struct {
		name   string
		r      Rules
		jumps  int
		lookup bool
	}{
		{"budget", Rules{MarkBit: 1, Guess: guess, Prefix4: 32, Prefix6: 64, LockedLookup: budget}, 2, true},
		{"global cap only", Rules{MarkBit: 1, Global: Limit{Rate: 1000, Unit: PerSecond, Burst: 5}, LockedLookup: budget}, 2, true},
		{"no budget", Rules{MarkBit: 1, Guess: guess, Prefix4: 32, Prefix6: 64}, 2, false},
		{"limits off", Rules{MarkBit: 1, LockedLookup: budget}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var syn, locked []ruleDesc
			for _, d := range tc.r.ruleList() {
				switch d.chain {
				case ChainSyn:
					syn = append(syn, d)
				case ChainLockedOut:
					locked = append(locked, d)
				}
			}
			firstLookup := -1
			for i, d := range syn {
				if strings.Contains(d.text, "@valid") {
					firstLookup = i
					break
				}
			}
			jumps := 0
			for i, d := range syn {
				if strings.HasSuffix(d.text, "jump "+ChainLockedOut) {
					jumps++
					if i > firstLookup {
						t.Errorf("rule %d %q comes after the knock lookup (rule %d)", i, d.text, firstLookup)
					}
				}
			}
			if jumps != tc.jumps {
				t.Errorf("%d jumps to %s, want %d", jumps, ChainLockedOut, tc.jumps)
			}
			if tc.jumps == 0 {
				if len(locked) != 0 {
					t.Errorf("limits off, yet %d rules in %s", len(locked), ChainLockedOut)
				}
				return
			}
			var limits []*expr.Limit
			for _, d := range locked {
				for _, e := range d.exprs {
					if l, ok := e.(*expr.Limit); ok {
						limits = append(limits, l)
					}
				}
			}
			want := []string{"tcp dport @rstports counter packets 0 bytes 0 reject with tcp reset", "counter packets 0 bytes 0 drop"}
			if tc.lookup {
				want = append([]string{"limit rate 2000/second burst 2000 packets return"}, want...)
				if len(limits) != 1 || limits[0].Over || limits[0].Rate != 2000 || limits[0].Burst != 2000 || limits[0].Unit != expr.LimitTimeSecond {
					t.Errorf("limits %+v, want one of 2000/second burst 2000, not over", limits)
				}
				if v, ok := locked[0].exprs[len(locked[0].exprs)-1].(*expr.Verdict); !ok || v.Kind != expr.VerdictReturn {
					t.Errorf("the budget rule ends in %+v, want return", locked[0].exprs[len(locked[0].exprs)-1])
				}
			} else if len(limits) != 0 {
				t.Errorf("no budget, yet limits %+v", limits)
			}
			var got []string
			for _, d := range locked {
				got = append(got, d.text)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s:\n%s\nwant\n%s", ChainLockedOut, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			for _, d := range locked[len(locked)-2:] {
				if d.role != roleLockout {
					t.Errorf("%q counts as %v, want a lockout", d.text, d.role)
				}
			}
		})
	}
}
