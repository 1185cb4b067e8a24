package nftgen

import (
	"strings"
	"testing"
	"time"
)

func TestFingerprintRoundTrip(t *testing.T) {
	for _, bit := range []uint32{1, 1 << 5, 1 << 23, 1 << 31} {
		for _, group := range []uint16{0, 1, 23, 65535} {
			for _, drop := range []uint16{0, 24, 65535} {
				r := Rules{MarkBit: bit, LogGroup: group, DropLogGroup: drop}
				got, ok := parseFingerprint(r.fingerprint())
				if !ok || got != r {
					t.Errorf("mark %#x log %d droplog %d: parsed %+v, %v", bit, group, drop, got, ok)
				}
			}
		}
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
		RulesVersion + " mark=0x00800000 log=70000",         // out of range
		RulesVersion + " mark=0x00800000 log=023",           // not canonical
		RulesVersion + " log=23 mark=0x00800000",            // not in order
		RulesVersion + " mark=0x00800000 droplog=24 log=23", // not in order
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
// a text, and that the expressions KnockRules and InputRules return are the
// ones Render's text stands for, in the same order.
func TestRuleTextsAndExpressionsPair(t *testing.T) {
	r := Rules{MarkBit: 1 << 23, LogGroup: 23}
	list := r.ruleList()
	if n := len(InputRules(r)) + len(KnockRules(r)); n != len(list) {
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
