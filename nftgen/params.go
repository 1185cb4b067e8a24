package nftgen

import (
	"fmt"
	"math/bits"
)

// Rules are the parameters of the chains' rules. Everything a rule depends
// on is a field here, and everything about the rules is derived from it:
// the expressions Apply installs and the text Render prints (ruleList, in
// rules.go), and the fingerprint (fingerprint.go) stored in each rule so a sync can
// tell whether the installed rules are the ones it would write. A new
// parameter (a mode, a rate limit, source-port binding) is a new field, its
// check in validate, its spelling in String and parseRules, and the parts of
// ruleList that use it.
type Rules struct {
	// MarkBit is the conntrack mark bit (a mask with exactly one bit set)
	// that marks an admitted flow.
	MarkBit uint32
	// PacketMarkBit, when not 0, is the packet mark bit (a mask with
	// exactly one bit set) the admit rules and the admitted-flow rule set
	// on the packet (`meta mark set meta mark | BIT`): the listener's
	// socket filter (package listenlock) lets only SYNs with it through.
	PacketMarkBit uint32
	// LogGroup, when not 0, is the nflog group the admit rule sends each
	// admitted SYN's headers to (`log group N`), so the daemon learns every
	// spent knock at once (package admitlog reads them).
	LogGroup uint16
	// DropLogGroup, when not 0, is the nflog group a rule before the drop
	// sends a sample of the dropped packets to, at most DropLogRate a
	// second (`limit rate N/second log group M`), so the daemon can say
	// who is knocking wrongly without user space work per packet.
	DropLogGroup uint16
	// Guess, when its rate is not 0, limits each source's unknocked SYNs
	// to the protected ports: a source over it is locked out for
	// LockoutTimeout at a time, and its SYNs are then looked up only
	// within the budget LockedLookup.
	Guess Limit
	// Prefix4 and Prefix6 are the prefix lengths that make one source for
	// Guess: 32 and 64 by default.
	Prefix4, Prefix6 uint8
	// Global, when its rate is not 0, caps unknocked SYNs from all sources
	// together: over it, every source that sends one is locked out.
	Global Limit
	// LockedLookup is the budget of knock lookups shared by all locked-out
	// sources together (a token bucket: Rate a Unit, Burst at once). A
	// locked-out source's SYN within it is looked up like any other; one
	// over it is dropped, or reset at a reset port, unlooked. Off (rate 0):
	// a locked-out source gets no lookup at all. It matters only with a
	// limit on.
	LockedLookup Limit
	// SourcePort, when set, adds the lookups of 48-bit knocks: a SYN
	// whose tcp sport . tcp dport . tcp sequence is in valid_sp is
	// admitted like one whose tcp dport . tcp sequence is in valid (the
	// services with bind_source_port put their knocks there).
	SourcePort bool
}

func (r Rules) validate() error {
	if bits.OnesCount32(r.MarkBit) != 1 {
		return fmt.Errorf("ct mark bit %#x must have exactly one bit set", r.MarkBit)
	}
	if r.PacketMarkBit != 0 && bits.OnesCount32(r.PacketMarkBit) != 1 {
		return fmt.Errorf("packet mark bit %#x must have exactly one bit set", r.PacketMarkBit)
	}
	for _, l := range []Limit{r.Guess, r.Global, r.LockedLookup} {
		if _, ok := l.Unit.expr(); !l.Off() && !ok {
			return fmt.Errorf("limit unit %q is not second, minute or hour", l.Unit)
		}
	}
	if !r.Guess.Off() && (r.Prefix4 < 1 || r.Prefix4 > 32 || r.Prefix6 < 1 || r.Prefix6 > 128) {
		return fmt.Errorf("source prefixes /%d, /%d: want 1..32 and 1..128", r.Prefix4, r.Prefix6)
	}
	return nil
}

// prefixes returns the source prefix lengths the lockout sets key on.
func (r Rules) prefixes() (p4, p6 uint8) {
	p4, p6 = r.Prefix4, r.Prefix6
	if p4 == 0 {
		p4 = 32
	}
	if p6 == 0 {
		p6 = 64
	}
	return p4, p6
}
