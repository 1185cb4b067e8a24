package nftgen

import (
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"
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
		"seqknock/rules/v3 mark=0x00800000 log=23",                      // the shape before the raw chain
		RulesVersion,
	} {
		b := tlv(udataRuleFingerprint, []byte(text))
		if r, ok := parseFingerprint(b); ok {
			t.Errorf("%q parsed as %+v", text, r)
		}
	}
	if _, ok := parseFingerprint(tlv(0, []byte(good))); ok {
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
	for _, ch := range chainOrder {
		n += len(r.chainRules(ch))
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
