package nftgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Registers as nft allocates them for "tcp dport . tcp sequence": the port in
// the first 32-bit slot of register 1, the sequence number in the next one.
const (
	regKey = unix.NFT_REG_1
	regSeq = unix.NFT_REG32_01
)

// ctState bits, as the kernel's NF_CT_STATE_BIT.
const (
	ctStateEstablished = 1 << 1
	ctStateRelated     = 1 << 2
	ctStateNew         = 1 << 3
)

// tcpFlag bits of the TCP header's flags byte.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// RulesVersion names the rules this package builds; it is stored in each
// rule's user data, so a sync can tell whether the installed rules are the
// ones it would write. Bump it whenever the rule builders change.
const RulesVersion = "seqknock/rules/v1"

// udataRuleFingerprint is a rule user data TLV type that nft does not know
// and so neither shows nor rejects (it reads only type 0, the comment).
const udataRuleFingerprint = 0xf0

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

// Chains returns the input base chain and the knock chain.
func Chains(t *nftables.Table) (input, knock *nftables.Chain) {
	prio := nftables.ChainPriority(InputPriority)
	policy := nftables.ChainPolicyAccept
	input = &nftables.Chain{
		Table:    t,
		Name:     ChainInput,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookInput,
		Priority: &prio,
		Policy:   &policy,
	}
	knock = &nftables.Chain{Table: t, Name: ChainKnock}
	return input, knock
}

func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// isTCP is "meta l4proto tcp".
func isTCP() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regKey},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: []byte{unix.IPPROTO_TCP}},
	}
}

// loadDport loads "tcp dport" into register 1.
func loadDport() expr.Any {
	return &expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

// loadDportSeq loads the key "tcp dport . tcp sequence".
func loadDportSeq() []expr.Any {
	return []expr.Any{
		loadDport(),
		&expr.Payload{DestRegister: regSeq, Base: expr.PayloadBaseTransportHeader, Offset: 4, Len: 4},
	}
}

// ctBits is "ct KEY & mask OP value" on a 32-bit ct key.
func ctBits(key expr.CtKey, mask uint32, op expr.CmpOp, value uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: key, Register: regKey},
		&expr.Bitwise{SourceRegister: regKey, DestRegister: regKey, Len: 4, Mask: ne32(mask), Xor: ne32(0)},
		&expr.Cmp{Op: op, Register: regKey, Data: ne32(value)},
	}
}

func join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// InputRules returns the input chain's one rule:
//
//	tcp dport @ports jump knock
func InputRules() [][]expr.Any {
	return [][]expr.Any{join(
		isTCP(),
		[]expr.Any{
			loadDport(),
			&expr.Lookup{SourceRegister: regKey, SetName: SetPorts},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: ChainKnock},
		},
	)}
}

// KnockRules returns the knock chain's rules, in order:
//
//	ct state established,related accept
//	ct mark & BIT == BIT accept
//	tcp flags & (fin|syn|rst|ack) == syn ct state new
//	  tcp dport . tcp sequence @valid tcp dport . tcp sequence != @used
//	  add @used { tcp dport . tcp sequence } ct mark set ct mark | BIT counter accept
//	tcp flags ! syn ct state new accept
//	counter drop
//
// The fourth rule is not in DESIGN.md's shape. In a namespace where nothing
// used conntrack before the table was installed, connections that were
// already open are untracked; their next packet is picked up mid-stream as
// "ct state new" without SYN, and the drop rule would kill them. Accepting
// such packets lets them become established. It opens nothing: a packet
// without SYN cannot start a connection (a SYN cookie ACK would need a
// SYN-ACK, which an unknocked SYN never gets), and the kernel answers a
// stray one with a reset whether the port listens or not.
func KnockRules(markBit uint32) [][]expr.Any {
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	return [][]expr.Any{
		join(ctBits(expr.CtKeySTATE, ctStateEstablished|ctStateRelated, expr.CmpOpNeq, 0), []expr.Any{accept}),
		join(ctBits(expr.CtKeyMARK, markBit, expr.CmpOpEq, markBit), []expr.Any{accept}),
		join(
			isTCP(),
			[]expr.Any{
				&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
				&expr.Bitwise{SourceRegister: regKey, DestRegister: regKey, Len: 1, Mask: []byte{tcpFIN | tcpSYN | tcpRST | tcpACK}, Xor: []byte{0}},
				&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: []byte{tcpSYN}},
			},
			ctBits(expr.CtKeySTATE, ctStateNew, expr.CmpOpNeq, 0),
			loadDportSeq(),
			[]expr.Any{&expr.Lookup{SourceRegister: regKey, SetName: SetValid}},
			loadDportSeq(),
			[]expr.Any{&expr.Lookup{SourceRegister: regKey, SetName: SetUsed, Invert: true}},
			loadDportSeq(),
			[]expr.Any{
				&expr.Dynset{SrcRegKey: regKey, SetName: SetUsed, Operation: unix.NFT_DYNSET_OP_ADD},
				&expr.Ct{Key: expr.CtKeyMARK, Register: regKey},
				&expr.Bitwise{SourceRegister: regKey, DestRegister: regKey, Len: 4, Mask: ne32(^markBit), Xor: ne32(markBit)},
				&expr.Ct{Key: expr.CtKeyMARK, Register: regKey, SourceRegister: true},
				&expr.Counter{},
				accept,
			},
		),
		join(
			isTCP(),
			[]expr.Any{
				&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
				&expr.Bitwise{SourceRegister: regKey, DestRegister: regKey, Len: 1, Mask: []byte{tcpSYN}, Xor: []byte{0}},
				&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: []byte{0}},
			},
			ctBits(expr.CtKeySTATE, ctStateNew, expr.CmpOpNeq, 0),
			[]expr.Any{accept},
		),
		{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}},
	}
}

// fingerprint is the rule user data that marks rules built by this version
// of the package for markBit.
func fingerprint(markBit uint32) []byte {
	return tlv(udataRuleFingerprint, []byte(fmt.Sprintf("%s mark=%#08x", RulesVersion, markBit)))
}

// parseFingerprint returns the mark bit a fingerprint was made for, and
// whether b is a fingerprint of this version at all.
func parseFingerprint(b []byte) (uint32, bool) {
	if len(b) < 2 || b[0] != udataRuleFingerprint || int(b[1]) != len(b)-2 {
		return 0, false
	}
	var bit uint32
	if _, err := fmt.Sscanf(string(b[2:]), RulesVersion+" mark=%v", &bit); err != nil {
		return 0, false
	}
	if !bytes.Equal(b, fingerprint(bit)) {
		return 0, false
	}
	return bit, true
}

// PortKey is the ports set key for port.
func portKey(port uint16) []byte { return binary.BigEndian.AppendUint16(nil, port) }

// Elements returns the valid set's elements at now: one per distinct
// (port, isn), with the latest expiry where two coincide, each timing out
// when its knock leaves the window (rounded down to the millisecond the
// kernel counts in). Elements already expired at now are left out.
func Elements(valid []Element, now time.Time) []nftables.SetElement {
	var out []nftables.SetElement
	eachElementChunk(valid, now, len(valid)+1, func(chunk []nftables.SetElement) error {
		out = append(out, chunk...)
		return nil
	})
	return out
}

// eachElementChunk calls fn with the valid set's elements (as Elements
// describes them) in chunks of at most size, in order. A chunk and its keys
// are reused after fn returns, so a cold sync of a large config never holds
// all its SetElements at once.
func eachElementChunk(valid []Element, now time.Time, size int, fn func([]nftables.SetElement) error) error {
	// The latest expiry of each (port, isn); duplicates are rare (two users
	// whose knocks collide), so this is the only full-size structure.
	best := make(map[uint64]int32, len(valid))
	for i, e := range valid {
		k := uint64(e.Port)<<32 | uint64(e.ISN)
		if j, ok := best[k]; !ok || e.Expires.After(valid[j].Expires) {
			best[k] = int32(i)
		}
	}
	chunk := make([]nftables.SetElement, 0, min(size, len(valid)))
	keys := make([]byte, 0, 8*cap(chunk))
	for i, e := range valid {
		if best[uint64(e.Port)<<32|uint64(e.ISN)] != int32(i) {
			continue
		}
		ttl := e.Expires.Sub(now).Truncate(time.Millisecond)
		if ttl <= 0 {
			continue
		}
		keys = binary.BigEndian.AppendUint16(keys, e.Port)
		keys = append(keys, 0, 0)
		keys = binary.BigEndian.AppendUint32(keys, e.ISN)
		chunk = append(chunk, nftables.SetElement{Key: keys[len(keys)-8 : len(keys) : len(keys)], Timeout: ttl})
		if len(chunk) == size {
			if err := fn(chunk); err != nil {
				return err
			}
			chunk, keys = chunk[:0], keys[:0]
		}
	}
	if len(chunk) > 0 {
		return fn(chunk)
	}
	return nil
}

// PortElements returns the ports set's elements.
func PortElements(ports []uint16) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(ports))
	for _, p := range ports {
		out = append(out, nftables.SetElement{Key: portKey(p)})
	}
	return out
}
