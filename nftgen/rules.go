package nftgen

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Rules are the parameters of the chains' rules. Everything a rule depends
// on is a field here, and everything about the rules is derived from it in
// this file: the expressions Apply installs (InputRules, KnockRules), the
// text Render prints, and the fingerprint stored in each rule so a sync can
// tell whether the installed rules are the ones it would write. A new
// parameter (a mode, a rate limit, source-port binding) is a new field, its
// check in validate, its spelling in String and parseRules, and the parts of
// ruleList that use it.
type Rules struct {
	// MarkBit is the conntrack mark bit (a mask with exactly one bit set)
	// that marks an admitted flow.
	MarkBit uint32
	// LogGroup, when not 0, is the nflog group the admit rule sends each
	// admitted SYN's headers to (`log group N`), so the daemon learns every
	// spent knock at once (package admitlog reads them).
	LogGroup uint16
	// DropLogGroup, when not 0, is the nflog group a rule before the drop
	// sends a sample of the dropped packets to, at most DropLogRate a
	// second (`limit rate N/second log group M`), so the daemon can say
	// who is knocking wrongly without user space work per packet.
	DropLogGroup uint16
}

// DropLogRate is how many dropped packets a second the drop log samples.
const DropLogRate = 10

func (r Rules) validate() error {
	if bits.OnesCount32(r.MarkBit) != 1 {
		return fmt.Errorf("ct mark bit %#x must have exactly one bit set", r.MarkBit)
	}
	return nil
}

// String spells the parameters as the fingerprint stores them:
// "mark=0x800000", then " log=N" when LogGroup is set and " droplog=M"
// when DropLogGroup is.
func (r Rules) String() string {
	s := fmt.Sprintf("mark=%#08x", r.MarkBit)
	if r.LogGroup != 0 {
		s += fmt.Sprintf(" log=%d", r.LogGroup)
	}
	if r.DropLogGroup != 0 {
		s += fmt.Sprintf(" droplog=%d", r.DropLogGroup)
	}
	return s
}

// parseRules reads what String wrote; anything else is an error.
func parseRules(s string) (Rules, error) {
	var r Rules
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "mark":
			n, err := strconv.ParseUint(v, 0, 32)
			if err != nil {
				return Rules{}, fmt.Errorf("mark: %w", err)
			}
			r.MarkBit = uint32(n)
		case "log":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return Rules{}, fmt.Errorf("log: %w", err)
			}
			r.LogGroup = uint16(n)
		case "droplog":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return Rules{}, fmt.Errorf("droplog: %w", err)
			}
			r.DropLogGroup = uint16(n)
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
const RulesVersion = "seqknock/rules/v3"

// udataRuleFingerprint is a rule user data TLV type that nft does not know
// and so neither shows nor rejects (it reads only type 0, the comment).
const udataRuleFingerprint = 0xf0

// fingerprint is the rule user data that marks rules built by this version
// of the package for r.
func (r Rules) fingerprint() []byte {
	return tlv(udataRuleFingerprint, []byte(RulesVersion+" "+r.String()))
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
// and its text as `nft list ruleset` shows it (counters at zero).
type ruleDesc struct {
	chain string
	exprs []expr.Any
	text  string
}

// part is a piece of a rule: its expressions and how nft lists them.
type part struct {
	text  string
	exprs []expr.Any
}

func rule(chain string, parts ...part) ruleDesc {
	r := ruleDesc{chain: chain}
	var texts []string
	for _, p := range parts {
		if p.text == "" {
			continue // an optional part that is off
		}
		texts = append(texts, p.text)
		r.exprs = append(r.exprs, p.exprs...)
	}
	r.text = strings.Join(texts, " ")
	return r
}

// ruleList returns every rule of the table, in chain order:
//
//	chain input:
//	tcp dport @ports jump knock
//	chain knock:
//	ct state established,related accept
//	ct mark & BIT == BIT accept
//	tcp flags syn / fin,syn,rst,ack ct state new
//	  tcp dport . tcp sequence @valid tcp dport . tcp sequence != @used
//	  add @used { tcp dport . tcp sequence } ct mark set ct mark | BIT
//	  [log group N] counter accept
//	tcp flags ! syn ct state new ip saddr . tcp sport . ip daddr . tcp dport @sessions4 accept
//	tcp flags ! syn ct state new ip6 saddr . tcp sport . ip6 daddr . tcp dport @sessions6 accept
//	[limit rate 10/second log group M]
//	counter drop
//
// The two sessions rules are not in DESIGN.md's shape. Conntrack picks up
// a connection it does not know (one open before the table was installed,
// while conntrack was idle, or any after `conntrack -F`) mid-stream: its
// next packet is "ct state new" without SYN, and the drop rule would kill
// it. Such a packet is accepted only when its 4-tuple is a connection that
// really exists on this host: the sessions sets hold the established
// sockets on the protected ports, from sock_diag, refilled at every sync
// and whenever conntrack loses entries. A non-SYN packet of any other flow
// (a scanner's ACK, FIN or data) is dropped like an unknocked SYN, so the
// port neither answers it with a reset nor lets a guessed SYN cookie in.
func (r Rules) ruleList() []ruleDesc {
	mark := fmt.Sprintf("0x%08x", r.MarkBit)
	drop := []ruleDesc{rule(ChainKnock,
		counter(),
		part{"drop", []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}})}
	if r.DropLogGroup != 0 {
		drop = append([]ruleDesc{rule(ChainKnock,
			part{fmt.Sprintf("limit rate %d/second", DropLogRate), []expr.Any{
				&expr.Limit{Type: expr.LimitTypePkts, Rate: DropLogRate, Unit: expr.LimitTimeSecond, Burst: 5},
			}},
			logGroup(r.DropLogGroup))}, drop...)
	}
	return append([]ruleDesc{
		rule(ChainInput,
			part{"tcp dport @ports", append(isTCP(), loadDport(), &expr.Lookup{SourceRegister: regKey, SetName: SetPorts})},
			jump(ChainKnock)),

		rule(ChainKnock,
			ctState("established,related", ctStateEstablished|ctStateRelated),
			accept()),
		rule(ChainKnock,
			part{"ct mark & " + mark + " == " + mark, ctBits(expr.CtKeyMARK, r.MarkBit, expr.CmpOpEq, r.MarkBit)},
			accept()),
		rule(ChainKnock,
			tcpFlags("syn / fin,syn,rst,ack", tcpFIN|tcpSYN|tcpRST|tcpACK, tcpSYN),
			ctState("new", ctStateNew),
			part{"tcp dport . tcp sequence @valid", append(loadDportSeq(), &expr.Lookup{SourceRegister: regKey, SetName: SetValid})},
			part{"tcp dport . tcp sequence != @used", append(loadDportSeq(), &expr.Lookup{SourceRegister: regKey, SetName: SetUsed, Invert: true})},
			part{"add @used { tcp dport . tcp sequence }", append(loadDportSeq(), &expr.Dynset{SrcRegKey: regKey, SetName: SetUsed, Operation: unix.NFT_DYNSET_OP_ADD})},
			part{"ct mark set ct mark | " + mark, []expr.Any{
				&expr.Ct{Key: expr.CtKeyMARK, Register: regKey},
				&expr.Bitwise{SourceRegister: regKey, DestRegister: regKey, Len: 4, Mask: ne32(^r.MarkBit), Xor: ne32(r.MarkBit)},
				&expr.Ct{Key: expr.CtKeyMARK, Register: regKey, SourceRegister: true},
			}},
			r.logAdmitted(),
			counter(),
			accept()),
		rule(ChainKnock,
			tcpFlags("! syn", tcpSYN, 0),
			ctState("new", ctStateNew),
			sessionLookup(false),
			accept()),
		rule(ChainKnock,
			tcpFlags("! syn", tcpSYN, 0),
			ctState("new", ctStateNew),
			sessionLookup(true),
			accept()),
	}, drop...)
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

// InputRules returns the input chain's rules (see ruleList).
func InputRules(r Rules) [][]expr.Any { return r.chainRules(ChainInput) }

// KnockRules returns the knock chain's rules, in order (see ruleList).
func KnockRules(r Rules) [][]expr.Any { return r.chainRules(ChainKnock) }

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
	if v6 {
		return part{"ip6 saddr . tcp sport . ip6 daddr . tcp dport @" + SetSessions6, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: regKey},
			&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: []byte{unix.NFPROTO_IPV6}},
			&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
			&expr.Payload{DestRegister: unix.NFT_REG32_04, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Payload{DestRegister: unix.NFT_REG32_05, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			&expr.Payload{DestRegister: unix.NFT_REG32_09, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: regKey, SetName: SetSessions6},
		}}
	}
	return part{"ip saddr . tcp sport . ip daddr . tcp dport @" + SetSessions4, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: regKey},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: unix.NFT_REG32_01, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Payload{DestRegister: unix.NFT_REG32_02, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Payload{DestRegister: unix.NFT_REG32_03, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: regKey, SetName: SetSessions4},
	}}
}

// logAdmitted is "log group N" (the packet's headers to nflog group N),
// or nothing when no group is set.
func (r Rules) logAdmitted() part {
	if r.LogGroup == 0 {
		return part{}
	}
	return logGroup(r.LogGroup)
}

// logGroup is "log group N": the packet's headers to nflog group N.
func logGroup(n uint16) part {
	return part{fmt.Sprintf("log group %d", n), []expr.Any{
		&expr.Log{Key: 1 << unix.NFTA_LOG_GROUP, Group: n},
	}}
}

func counter() part {
	return part{"counter packets 0 bytes 0", []expr.Any{&expr.Counter{}}}
}

func accept() part {
	return part{"accept", []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}}
}

func jump(chain string) part {
	return part{"jump " + chain, []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}}
}
