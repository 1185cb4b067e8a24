package nftgen

import (
	"testing"

	"github.com/google/nftables"
)

// TestForeignShapes: every set and chain this package makes is its own;
// another name, key length, kind, hook or priority is foreign.
func TestForeignShapes(t *testing.T) {
	tb := Table("seqknock")
	for _, x := range tableSets(tb, State{}) {
		if why := foreignSet(x.Set); why != "" {
			t.Errorf("our set %s: %s", x.Name, why)
		}
	}
	for _, c := range chainSpecs {
		if why := foreignChain(c.chain(tb)); why != "" {
			t.Errorf("our chain %s: %s", c.name, why)
		}
	}
	x, _ := ourSet(SetValid)
	valid := x.Set
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
	input := ourChain(ChainInput)
	moved := *input
	prio := nftables.ChainPriorityFilter
	moved.Priority = prio
	regular := *input
	regular.Hooknum, regular.Priority, regular.Type = nil, nil, ""
	based := *input
	based.Name = ChainKnock
	for _, c := range []*nftables.Chain{{Table: tb, Name: "extra"}, &moved, &regular, &based} {
		if foreignChain(c) == "" {
			t.Errorf("chain %+v taken for ours", c)
		}
	}
}
