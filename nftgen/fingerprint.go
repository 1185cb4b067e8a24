package nftgen

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/google/nftables/userdata"
)

// String spells the parameters as the fingerprint stores them:
// "mark=0x800000", then " pmark=0x1000000" when PacketMarkBit is set,
// " log=N" when LogGroup is, " droplog=M"
// when DropLogGroup is, " guess=10/second+20 prefix=32/64" when Guess is
// on, " global=1000/second+5" when Global is, " lookup=2000/second+2000"
// when LockedLookup is and " sport" when SourcePort is.
func (r Rules) String() string {
	s := fmt.Sprintf("mark=%#08x", r.MarkBit)
	if r.PacketMarkBit != 0 {
		s += fmt.Sprintf(" pmark=%#08x", r.PacketMarkBit)
	}
	if r.LogGroup != 0 {
		s += fmt.Sprintf(" log=%d", r.LogGroup)
	}
	if r.DropLogGroup != 0 {
		s += fmt.Sprintf(" droplog=%d", r.DropLogGroup)
	}
	if !r.Guess.Off() {
		s += fmt.Sprintf(" guess=%s prefix=%d/%d", r.Guess, r.Prefix4, r.Prefix6)
	}
	if !r.Global.Off() {
		s += fmt.Sprintf(" global=%s", r.Global)
	}
	if !r.LockedLookup.Off() {
		s += fmt.Sprintf(" lookup=%s", r.LockedLookup)
	}
	if r.SourcePort {
		s += " sport"
	}
	return s
}

// parseRules reads what String wrote; anything else is an error.
func parseRules(s string) (Rules, error) {
	var r Rules
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "mark", "pmark", "log", "droplog":
			base, size := 0, 32 // the marks in hex, the groups in decimal
			if k == "log" || k == "droplog" {
				base, size = 10, 16
			}
			n, err := strconv.ParseUint(v, base, size)
			if err != nil {
				return Rules{}, fmt.Errorf("%s: %w", k, err)
			}
			switch k {
			case "mark":
				r.MarkBit = uint32(n)
			case "pmark":
				r.PacketMarkBit = uint32(n)
			case "log":
				r.LogGroup = uint16(n)
			default:
				r.DropLogGroup = uint16(n)
			}
		case "guess", "global", "lookup":
			l, err := parseLimitField(v)
			if err != nil {
				return Rules{}, fmt.Errorf("%s: %w", k, err)
			}
			switch k {
			case "guess":
				r.Guess = l
			case "global":
				r.Global = l
			default:
				r.LockedLookup = l
			}
		case "sport":
			if v != "" {
				return Rules{}, fmt.Errorf("sport: %q", v)
			}
			r.SourcePort = true
		case "prefix":
			a, b, _ := strings.Cut(v, "/")
			p4, err4 := strconv.ParseUint(a, 10, 8)
			p6, err6 := strconv.ParseUint(b, 10, 8)
			if err4 != nil || err6 != nil {
				return Rules{}, fmt.Errorf("prefix: %q", v)
			}
			r.Prefix4, r.Prefix6 = uint8(p4), uint8(p6)
		default:
			return Rules{}, fmt.Errorf("unknown parameter %q", k)
		}
	}
	if r.String() != s {
		return Rules{}, fmt.Errorf("not in canonical form: %q", s)
	}
	return r, nil
}

// RulesVersion names the rule shapes this package builds; it is part of the
// fingerprint. Bump it whenever a rule changes in a way no Rules field
// records.
const RulesVersion = "seqknock/rules/v7"

// udataRuleFingerprint is a rule user data TLV type that nft does not know
// and so neither shows nor rejects (it reads only type 0, the comment).
const udataRuleFingerprint = 0xf0

// fingerprint is the rule user data that marks rules built by this version
// of the package for r.
func (r Rules) fingerprint() []byte {
	return userdata.Append(nil, udataRuleFingerprint, []byte(RulesVersion+" "+r.String()))
}

// parseFingerprint returns the parameters a fingerprint was made for, and
// whether b is a fingerprint of this version at all.
func parseFingerprint(b []byte) (Rules, bool) {
	if len(b) < 2 || b[0] != udataRuleFingerprint || int(b[1]) != len(b)-2 {
		return Rules{}, false
	}
	params, ok := strings.CutPrefix(string(b[2:]), RulesVersion+" ")
	if !ok {
		return Rules{}, false
	}
	r, err := parseRules(params)
	if err != nil {
		return Rules{}, false
	}
	return r, true
}

// ruleDesc is one rule of the table: the chain it goes in, its expressions
// and its text as `nft list ruleset` shows it (counters at zero), and what
// its counter counts, if it has one.
