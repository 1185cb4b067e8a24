package nftgen

import (
	"encoding/binary"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
)

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

// Table returns the inet table.
func Table(name string) *nftables.Table {
	return &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
}

// dportSeqType is the key type of "tcp dport . tcp sequence".
var dportSeqType = nftables.MustConcatSetType(nftables.TypeInetService, nftables.TypeInteger)

// Sets returns the three sets of the table, as nft would declare them.
func Sets(t *nftables.Table, s State) (ports, valid, used *nftables.Set) {
	ports = &nftables.Set{
		Table:        t,
		Name:         SetPorts,
		KeyType:      nftables.TypeInetService,
		KeyByteOrder: binaryutil.BigEndian,
	}
	valid = &nftables.Set{
		Table:      t,
		Name:       SetValid,
		KeyType:    dportSeqType,
		HasTimeout: true,
	}
	used = &nftables.Set{
		Table:      t,
		Name:       SetUsed,
		KeyType:    dportSeqType,
		HasTimeout: true,
		Dynamic:    true,
		Timeout:    s.UsedTimeout,
		Size:       s.usedSize(),
	}
	return ports, valid, used
}

// sportDportSeqType is the key type of "tcp sport . tcp dport . tcp
// sequence".
var sportDportSeqType = nftables.MustConcatSetType(nftables.TypeInetService, nftables.TypeInetService, nftables.TypeInteger)

// SPSets returns the sets of the 48-bit knocks, valid_sp and used_sp: as
// valid and used, keyed by the source port too.
func SPSets(t *nftables.Table, s State) (valid, used *nftables.Set) {
	_, v, u := Sets(t, s)
	v.Name, v.KeyType = SetValidSP, sportDportSeqType
	u.Name, u.KeyType = SetUsedSP, sportDportSeqType
	return v, u
}

// Key types of the sessions sets: "ip saddr . tcp sport . ip daddr . tcp
// dport" and its IPv6 twin.
var (
	sessions4Type = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeIPAddr, nftables.TypeInetService)
	sessions6Type = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService, nftables.TypeIP6Addr, nftables.TypeInetService)
)

// SessionSets returns the sets of connections that exist on the host.
func SessionSets(t *nftables.Table) (s4, s6 *nftables.Set) {
	return &nftables.Set{Table: t, Name: SetSessions4, KeyType: sessions4Type},
		&nftables.Set{Table: t, Name: SetSessions6, KeyType: sessions6Type}
}

// SessionElements returns the elements of the sessions sets for ss.
func SessionElements(ss []Session) (v4, v6 []nftables.SetElement) {
	port := func(b []byte, p uint16) []byte { return append(binary.BigEndian.AppendUint16(b, p), 0, 0) }
	for _, s := range ss {
		src, dst := s.Src.Addr().Unmap(), s.Dst.Addr().Unmap()
		if src.Is4() != dst.Is4() {
			continue
		}
		k := port(src.AsSlice(), s.Src.Port())
		k = port(append(k, dst.AsSlice()...), s.Dst.Port())
		if src.Is4() {
			v4 = append(v4, nftables.SetElement{Key: k})
		} else {
			v6 = append(v6, nftables.SetElement{Key: k})
		}
	}
	return v4, v6
}

// ModeSets returns the sets of the closed-port mode and the limits, in the
// order Apply creates them: rstports, unknocked (with a counter per
// element), guess4, guess6, limited4, limited6.
func ModeSets(t *nftables.Table) []*nftables.Set {
	meter := func(name string, key nftables.SetDatatype, timeout time.Duration) *nftables.Set {
		return &nftables.Set{Table: t, Name: name, KeyType: key, HasTimeout: true, Dynamic: true, Timeout: timeout, Size: DefaultSetSize}
	}
	return []*nftables.Set{
		{Table: t, Name: SetReset, KeyType: nftables.TypeInetService, KeyByteOrder: binaryutil.BigEndian},
		{Table: t, Name: SetUnknocked, KeyType: nftables.TypeInetService, KeyByteOrder: binaryutil.BigEndian, Counter: true},
		meter(SetGuess4, nftables.TypeIPAddr, GuessTimeout),
		meter(SetGuess6, nftables.TypeIP6Addr, GuessTimeout),
		meter(SetLimited4, nftables.TypeIPAddr, LockoutTimeout),
		meter(SetLimited6, nftables.TypeIP6Addr, LockoutTimeout),
	}
}

// PreChains returns the pre base chain (prerouting, priority raw) and the
// syn, lockout and lockedout chains.
func PreChains(t *nftables.Table) (pre, syn, lockout, lockedOut *nftables.Chain) {
	pre = baseChain(t, ChainPre, nftables.ChainHookPrerouting, PrePriority)
	return pre, &nftables.Chain{Table: t, Name: ChainSyn}, &nftables.Chain{Table: t, Name: ChainLockout},
		&nftables.Chain{Table: t, Name: ChainLockedOut}
}

// baseChain is a filter chain on hook at priority, policy accept.
func baseChain(t *nftables.Table, name string, hook *nftables.ChainHook, priority int) *nftables.Chain {
	prio := nftables.ChainPriority(priority)
	policy := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Table:    t,
		Name:     name,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  hook,
		Priority: &prio,
		Policy:   &policy,
	}
}

// Chains returns the input base chain and the knock chain.
func Chains(t *nftables.Table) (input, knock *nftables.Chain) {
	return baseChain(t, ChainInput, nftables.ChainHookInput, InputPriority), &nftables.Chain{Table: t, Name: ChainKnock}
}

// PortKey is the ports set key for port.
func portKey(port uint16) []byte { return binary.BigEndian.AppendUint16(nil, port) }

// Elements returns the valid set's elements at now: one per distinct
// (port, isn), with the latest expiry where two coincide, each timing out
// when its knock leaves the window (rounded down to the millisecond the
// kernel counts in). Elements already expired at now are left out, and so
// are those bound to a source port (valid_sp's).
func Elements(valid []Element, now time.Time) []nftables.SetElement {
	var out []nftables.SetElement
	eachUnique(valid, now, nil, func(sport, port uint16, isn uint32, ttl time.Duration) {
		if sport == 0 {
			out = append(out, nftables.SetElement{Key: dportSeqKey(port, isn), Timeout: ttl})
		}
	})
	return out
}

// eachUnique calls fn with the elements Elements describes, in order,
// leaving out the keys in skip; those bound to a source port too.
func eachUnique(valid []Element, now time.Time, skip map[uint64]bool, fn func(sport, port uint16, isn uint32, ttl time.Duration)) {
	// The latest expiry of each (sport, port, isn); duplicates are rare
	// (two users whose knocks collide).
	best := make(map[uint64]int32, len(valid))
	for i, e := range valid {
		k := e.key()
		if j, ok := best[k]; !ok || e.Expires.After(valid[j].Expires) {
			best[k] = int32(i)
		}
	}
	for i, e := range valid {
		k := e.key()
		if best[k] != int32(i) || skip[k] {
			continue
		}
		if ttl := e.Expires.Sub(now).Truncate(time.Millisecond); ttl > 0 {
			fn(e.SPort, e.Port, e.ISN, ttl)
		}
	}
}

// eachValid calls fn with every element the valid and valid_sp sets get
// from s at now: Valid's as Elements describes them, then what Knocks
// yields, each with its remaining time; expired knocks and those in
// s.Spent are left out. sport is 0 for valid's.
func (s State) eachValid(now time.Time, fn func(sport, port uint16, isn uint32, ttl time.Duration)) {
	var skip map[uint64]bool
	if len(s.Spent) > 0 {
		skip = make(map[uint64]bool, len(s.Spent))
		for _, e := range s.Spent {
			skip[e.key()] = true
		}
	}
	eachUnique(s.Valid, now, skip, fn)
	if s.Knocks == nil {
		return
	}
	s.Knocks(func(e Element) bool {
		if skip[e.key()] {
			return true
		}
		if ttl := e.Expires.Sub(now).Truncate(time.Millisecond); ttl > 0 {
			fn(e.SPort, e.Port, e.ISN, ttl)
		}
		return true
	})
}

// PortElements returns the ports set's elements.
func PortElements(ports []uint16) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(ports))
	for _, p := range ports {
		out = append(out, nftables.SetElement{Key: portKey(p)})
	}
	return out
}

// appendDportSeq appends the key of "tcp dport . tcp sequence" for port and
// isn: the port in the first 4-byte slot of the concatenation, padded.
func appendDportSeq(b []byte, port uint16, isn uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, port)
	b = append(b, 0, 0)
	return binary.BigEndian.AppendUint32(b, isn)
}

func dportSeqKey(port uint16, isn uint32) []byte { return appendDportSeq(nil, port, isn) }

// elementKey is an element's key in valid or used (sport 0) or in
// valid_sp or used_sp: "tcp sport . tcp dport . tcp sequence", the source
// port in the first 4-byte slot.
func elementKey(sport, port uint16, isn uint32) []byte {
	if sport == 0 {
		return dportSeqKey(port, isn)
	}
	return appendDportSeq(append(binary.BigEndian.AppendUint16(nil, sport), 0, 0), port, isn)
}
