package nftgen

import (
	"encoding/binary"
	"fmt"

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

func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// isTCP is "meta l4proto tcp", which nft leaves out of the listing where a
// tcp match follows.
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

// dportSeqKeyText and sportKeyText are the keys of the knocks' sets and
// of the 48-bit knocks' sets as nft writes them.
const (
	dportSeqKeyText = "tcp dport . tcp sequence"
	sportKeyText    = "tcp sport . tcp dport . tcp sequence"
)

// loadSportDportSeq loads the key "tcp sport . tcp dport . tcp sequence":
// each field in its own 32-bit slot of register 1 on, as nft allocates.
func loadSportDportSeq() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Payload{DestRegister: regSeq, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Payload{DestRegister: regSeq + 1, Base: expr.PayloadBaseTransportHeader, Offset: 4, Len: 4},
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

// ctState is "ct state NAMES": any of the state bits is set.
func ctState(names string, stateBits uint32) part {
	return part{"ct state " + names, ctBits(expr.CtKeySTATE, stateBits, expr.CmpOpNeq, 0)}
}

// tcpFlags is "tcp flags TEXT": the flags byte masked with mask equals want.
func tcpFlags(text string, mask, want byte) part {
	return part{"tcp flags " + text, append(isTCP(),
		&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: regKey, DestRegister: regKey, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: []byte{want}},
	)}
}

// sessionLookup is "ip saddr . tcp sport . ip daddr . tcp dport
// @sessions4" (or its ip6 twin): the packet's 4-tuple, from its own point
// of view, is a connection in the set. The addresses are loaded after a
// "meta nfproto" check, which nft lists implicitly.
func sessionLookup(v6 bool) part {
	ip, set, fam, saddr, daddr, n := "ip", SetSessions4, byte(unix.NFPROTO_IPV4), uint32(12), uint32(16), uint32(4)
	if v6 {
		ip, set, fam, saddr, daddr, n = "ip6", SetSessions6, unix.NFPROTO_IPV6, 8, 24, 16
	}
	// The concatenation's fields fill 32-bit registers from regKey on,
	// each as many as its length needs: an address n/4, a port one.
	sport := unix.NFT_REG32_00 + n/4
	return part{ip + " saddr . tcp sport . " + ip + " daddr . tcp dport @" + set, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: regKey},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: []byte{fam}},
		&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseNetworkHeader, Offset: saddr, Len: n},
		&expr.Payload{DestRegister: sport, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Payload{DestRegister: sport + 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddr, Len: n},
		&expr.Payload{DestRegister: sport + 1 + n/4, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: regKey, SetName: set},
	}}
}

// markAdmitted is "ct mark set ct mark | BIT": the flow is admitted.
func (r Rules) markAdmitted(mark string) part {
	return setBit("ct mark set ct mark | "+mark, &expr.Ct{Key: expr.CtKeyMARK, Register: regKey},
		&expr.Ct{Key: expr.CtKeyMARK, Register: regKey, SourceRegister: true}, r.MarkBit)
}

// markPacket is "meta mark set meta mark | PBIT": the packet may pass
// the listeners' socket filters. Nothing when PacketMarkBit is 0.
func (r Rules) markPacket() part {
	if r.PacketMarkBit == 0 {
		return part{}
	}
	return setBit(fmt.Sprintf("meta mark set meta mark | 0x%08x", r.PacketMarkBit), &expr.Meta{Key: expr.MetaKeyMARK, Register: regKey},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: regKey, SourceRegister: true}, r.PacketMarkBit)
}

// setBit is text: load a mark into the key register, set bit in it, and
// store it back.
func setBit(text string, load, store expr.Any, bit uint32) part {
	return part{text, []expr.Any{load, &expr.Bitwise{SourceRegister: regKey, DestRegister: regKey, Len: 4, Mask: ne32(^bit), Xor: ne32(bit)}, store}}
}

// logGroup is "log group N": the packet's headers to nflog group N; nothing
// when n is 0.
func logGroup(n uint16) part {
	if n == 0 {
		return part{}
	}
	return part{fmt.Sprintf("log group %d", n), []expr.Any{
		&expr.Log{Key: 1 << unix.NFTA_LOG_GROUP, Group: n},
	}}
}

func counter() part {
	return part{"counter packets 0 bytes 0", []expr.Any{&expr.Counter{}}}
}

func drop() part {
	return part{"drop", []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}}
}

func accept() part {
	return part{"accept", []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}}
}

func verdictReturn() part {
	return part{"return", []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}}
}

func jump(chain string) part {
	return part{"jump " + chain, []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}}
}
