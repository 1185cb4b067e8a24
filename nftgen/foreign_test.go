package nftgen

import (
	"testing"

	"github.com/google/nftables"
)

// TestForeignShapes: every set and chain this package makes is its own;
// another name, key length, kind, hook or priority is foreign.
func TestForeignShapes(t *testing.T) {
	for name, s := range ourSets() {
		if why := foreignSet(s); why != "" {
			t.Errorf("our set %s: %s", name, why)
		}
	}
	for name, c := range ourChains() {
		if why := foreignChain(c); why != "" {
			t.Errorf("our chain %s: %s", name, why)
		}
	}
	tb := Table("seqknock")
	_, valid, _ := Sets(tb, State{})
	other := *valid
	other.KeyType = nftables.TypeIPAddr
	asMap := *valid
	asMap.IsMap = true
	noTimeout := *valid
	noTimeout.HasTimeout = false
	for _, s := range []*nftables.Set{{Table: tb, Name: "extra", KeyType: nftables.TypeIPAddr}, &other, &asMap, &noTimeout} {
		if foreignSet(s) == "" {
			t.Errorf("set %+v taken for ours", s)
		}
	}
	input, knock := Chains(tb)
	moved := *input
	prio := nftables.ChainPriorityFilter
	moved.Priority = prio
	regular := *input
	regular.Hooknum, regular.Priority, regular.Type = nil, nil, ""
	based := *input
	based.Name = knock.Name
	for _, c := range []*nftables.Chain{{Table: tb, Name: "extra"}, &moved, &regular, &based} {
		if foreignChain(c) == "" {
			t.Errorf("chain %+v taken for ours", c)
		}
	}
}
