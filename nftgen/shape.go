package nftgen

import (
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
)

// The table's shape, its chains and sets, is declared here once: Apply
// creates them in this order, Render lists them, and Read tells a live
// chain or set that is not one of these (foreignChain, foreignSet). A
// chain or set is added here, then given its rules or elements.

// chainSpec is one chain of the table: a base chain (type filter, policy
// accept) on hook at priority, or a regular chain where hook is nil.
type chainSpec struct {
	name     string
	hook     *nftables.ChainHook
	priority int
	listed   string // hook and priority as nft lists them
}

// chainSpecs are the table's chains in the order Apply creates and nft
// lists them.
var chainSpecs = []chainSpec{
	{name: ChainInput, hook: nftables.ChainHookInput, priority: InputPriority, listed: "input priority filter " + signed(InputPriority)},
	{name: ChainKnock},
	{name: ChainPre, hook: nftables.ChainHookPrerouting, priority: PrePriority, listed: "prerouting priority raw"},
	{name: ChainSyn},
	{name: ChainLockout},
	{name: ChainLockedOut},
}

// chain is c in table t.
func (c chainSpec) chain(t *nftables.Table) *nftables.Chain {
	if c.hook == nil {
		return &nftables.Chain{Table: t, Name: c.name}
	}
	prio := nftables.ChainPriority(c.priority)
	policy := nftables.ChainPolicyAccept
	return &nftables.Chain{Table: t, Name: c.name, Type: nftables.ChainTypeFilter, Hooknum: c.hook, Priority: &prio, Policy: &policy}
}

// ourChain is the chain of that name this package makes, or nil.
func ourChain(name string) *nftables.Chain {
	for _, c := range chainSpecs {
		if c.name == name {
			return c.chain(Table(""))
		}
	}
	return nil
}

// LockoutTimeout is how long a source over a limit stays locked out; the
// lockout sets' timeout. While it lasts, the source's unknocked SYNs are
// dropped (or reset) without reaching a meter; after it, its meter decides
// again.
const LockoutTimeout = time.Second

// GuessTimeout is how long a source's meter lives after its last
// unknocked SYN (the guess sets' timeout): well beyond the time its
// bucket needs to fill up again.
const GuessTimeout = time.Minute

// DefaultSetSize is the capacity of the dynamic sets: what nft gives one
// when none is named.
const DefaultSetSize = 65535

// Key types of the concatenated sets: "tcp dport . tcp sequence", "tcp
// sport . tcp dport . tcp sequence", and the sessions sets' "ip saddr .
// tcp sport . ip daddr . tcp dport" and its IPv6 twin.
var (
	dportSeqType      = nftables.MustConcatSetType(nftables.TypeInetService, nftables.TypeInteger)
	sportDportSeqType = nftables.MustConcatSetType(nftables.TypeInetService, nftables.TypeInetService, nftables.TypeInteger)
	sessions4Type     = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeIPAddr, nftables.TypeInetService)
	sessions6Type     = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService, nftables.TypeIP6Addr, nftables.TypeInetService)
)

// tableSet is one set of the table and its key's type as nft lists it.
type tableSet struct {
	*nftables.Set
	typ string
}

// tableSets returns the table's sets for s in the order Apply creates and
// nft lists them. The source-port sets, last, exist only with source-port
// rules (sourcePortSet).
func tableSets(t *nftables.Table, s State) []tableSet {
	ports := func(name string, counter bool) tableSet {
		return tableSet{&nftables.Set{Table: t, Name: name, KeyType: nftables.TypeInetService, KeyByteOrder: binaryutil.BigEndian, Counter: counter}, "type inet_service"}
	}
	valid := func(name string, key nftables.SetDatatype, typ string) tableSet {
		return tableSet{&nftables.Set{Table: t, Name: name, KeyType: key, HasTimeout: true}, "typeof " + typ}
	}
	used := func(name string, key nftables.SetDatatype, typ string) tableSet {
		return tableSet{&nftables.Set{Table: t, Name: name, KeyType: key, HasTimeout: true, Dynamic: true, Timeout: s.UsedTimeout, Size: s.usedSize()}, "typeof " + typ}
	}
	meter := func(name string, key nftables.SetDatatype, typ string, timeout time.Duration) tableSet {
		return tableSet{&nftables.Set{Table: t, Name: name, KeyType: key, HasTimeout: true, Dynamic: true, Timeout: timeout, Size: DefaultSetSize}, "type " + typ}
	}
	return []tableSet{
		ports(SetPorts, false),
		valid(SetValid, dportSeqType, dportSeqKeyText),
		used(SetUsed, dportSeqType, dportSeqKeyText),
		{&nftables.Set{Table: t, Name: SetSessions4, KeyType: sessions4Type}, "type ipv4_addr . inet_service . ipv4_addr . inet_service"},
		{&nftables.Set{Table: t, Name: SetSessions6, KeyType: sessions6Type}, "type ipv6_addr . inet_service . ipv6_addr . inet_service"},
		ports(SetReset, false),
		ports(SetUnknocked, true),
		meter(SetGuess4, nftables.TypeIPAddr, "ipv4_addr", GuessTimeout),
		meter(SetGuess6, nftables.TypeIP6Addr, "ipv6_addr", GuessTimeout),
		meter(SetLimited4, nftables.TypeIPAddr, "ipv4_addr", LockoutTimeout),
		meter(SetLimited6, nftables.TypeIP6Addr, "ipv6_addr", LockoutTimeout),
		valid(SetValidSP, sportDportSeqType, sportKeyText),
		used(SetUsedSP, sportDportSeqType, sportKeyText),
	}
}

// sourcePortSet says whether the set name exists only with source-port
// rules.
func sourcePortSet(name string) bool { return name == SetValidSP || name == SetUsedSP }

// ourSet is the set of that name this package makes (sizes and timeouts
// aside, which Apply changes in place), and whether there is one.
func ourSet(name string) (tableSet, bool) {
	for _, x := range tableSets(Table(""), State{}) {
		if x.Name == name {
			return x, true
		}
	}
	return tableSet{}, false
}
