package nftgen

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

type ruleDesc struct {
	chain string
	exprs []expr.Any
	text  string
	role  role
}

// role is what a rule's counter counts, for Read.
type role int

const (
	roleNone    role = iota
	roleAdmit        // SYNs admitted by a knock
	roleDrop         // unknocked packets dropped
	roleReject       // unknocked packets answered with a reset
	roleLockout      // SYNs of locked-out sources dropped
)

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

func (d ruleDesc) as(r role) ruleDesc { d.role = r; return d }

// ruleList returns every rule of the table, in chain order:
//
//	chain input (hook input, priority filter - 10):
//	tcp dport @ports jump knock
//	chain knock:
//	ct mark & BIT == BIT [meta mark set meta mark | PBIT] accept
//	ct state established,related accept
//	tcp flags syn / fin,syn,rst,ack ct state new
//	  tcp dport . tcp sequence @valid tcp dport . tcp sequence != @used
//	  add @used { tcp dport . tcp sequence } ct mark set ct mark | BIT
//	  [meta mark set meta mark | PBIT] [log group N] counter accept
//	[tcp flags syn / fin,syn,rst,ack ct state new                (SourcePort on)
//	  tcp sport . tcp dport . tcp sequence @valid_sp
//	  tcp sport . tcp dport . tcp sequence != @used_sp
//	  add @used_sp { tcp sport . tcp dport . tcp sequence }
//	  ct mark set ct mark | BIT [meta mark set meta mark | PBIT]
//	  [log group N] counter accept]
//	tcp flags ! syn ct state new ip saddr . tcp sport . ip daddr . tcp dport @sessions4 accept
//	tcp flags ! syn ct state new ip6 saddr . tcp sport . ip6 daddr . tcp dport @sessions6 accept
//	[limit rate 10/second log group M]
//	tcp dport @unknocked
//	tcp dport @rstports counter reject with tcp reset
//	counter drop
//	chain pre (hook prerouting, priority raw: before conntrack):
//	tcp flags syn / fin,syn,rst,ack tcp dport @ports fib daddr type local jump syn
//	chain syn:
//	[ip saddr @limited4 jump lockedout                      (a limit on)
//	ip6 saddr & PREFIX == @limited6 jump lockedout]
//	tcp dport . tcp sequence @valid accept
//	tcp dport . tcp sequence @used accept
//	[tcp sport . tcp dport . tcp sequence @valid_sp accept   (SourcePort on)
//	tcp sport . tcp dport . tcp sequence @used_sp accept]
//	[tcp dport @rstports update @guess4 { ip saddr limit rate over R burst B packets }
//	  add @limited4 { ip saddr } counter reject with tcp reset   (guess limit on)
//	tcp dport != @rstports update @guess4 { ... } add @limited4 { ip saddr } counter drop
//	and the same two for ip6 saddr & PREFIX, @guess6 and @limited6]
//	[limit rate over G jump lockout]                       (global cap on)
//	tcp dport @unknocked
//	[limit rate 10/second log group M]
//	tcp dport @rstports counter reject with tcp reset
//	counter drop
//	chain lockout:
//	tcp dport @rstports add @limited4 { ip saddr } counter reject with tcp reset
//	add @limited4 { ip saddr } counter drop
//	tcp dport @rstports add @limited6 { ip6 saddr & PREFIX } counter reject with tcp reset
//	add @limited6 { ip6 saddr & PREFIX } counter drop
//	chain lockedout:                                        (a limit on)
//	[limit rate L burst L packets return]                   (LockedLookup on)
//	tcp dport @rstports counter reject with tcp reset
//	counter drop
//
// The packet mark (PacketMarkBit on) is the key to the second lock: the
// socket filter seqknockd attaches to each listener of a protected port
// drops every SYN without it, so a SYN reaches the service only through
// an admit rule of this table, or the admitted-flow rule (a SYN
// retransmission of an admitted flow carries the ct mark but must get the
// packet mark again: each packet's mark starts at 0). That rule comes
// before the established one, which a SYN retransmitted after the
// SYN-ACK went out would otherwise take, unmarked. The input hook runs
// before the socket's filter, so the mark set here is the one it reads.
//
// The two sessions rules: conntrack picks up a connection it does not know
// (one open before the table was installed, while conntrack was idle, or
// any after `conntrack -F`) mid-stream: its next packet is "ct state new"
// without SYN, and the drop rule would kill it. Such a packet is accepted
// only when its 4-tuple is a connection that really exists on this host:
// the sessions sets hold the established sockets on the protected ports,
// from sock_diag, refilled at every sync and whenever conntrack loses
// entries, and added to (AddSessions) as each admission is read from the
// admit rule's nflog. A non-SYN packet of any other flow (a scanner's ACK,
// FIN or data) is treated like an unknocked SYN: dropped, or at a port in
// reset mode answered as a closed port answers it, so a guessed SYN cookie
// never gets in.
//
// The pre and syn chains run before conntrack (priority raw, -300;
// conntrack is at -200 in prerouting), so a SYN that carries no knock at
// all costs no conntrack entry: only a SYN to a local address, to a
// protected port, whose knock is in valid or used goes on to conntrack and
// the knock chain (where replays and the ct state are judged). A knock in
// used passes too, so the SYN retransmissions of an admitted flow reach
// the ct mark rule after a sync took the knock out of valid. The fib check
// keeps forwarded traffic to the same port out, as the input hook did.
//
// A service that binds the client's source port (48-bit knocks) has its
// knocks in valid_sp, keyed by tcp sport . tcp dport . tcp sequence, and
// none in valid: a right ISN from another source port matches neither.
//
// A port in reset mode is in rstports: what would be dropped there is
// answered with "reject with tcp reset", which builds the reply the kernel
// sends from a port where nothing listens (RST/ACK acknowledging a SYN,
// FIN or bare packet; RST with the peer's ack number to an ACK; window 0,
// no options). The reject works from prerouting since Linux 5.x. A source
// over a limit is answered the same way at a port in reset mode, so a
// burst gets as many resets as a closed port gives (the limiter cannot be
// told apart from outside), and dropped at a port in drop mode.
//
// The limits: the guess sets are meters (a limit per source, refreshed
// while the source keeps guessing); a source over its meter, or any source
// that guesses while all sources together are over the global cap, goes
// into limited4/6 for LockoutTimeout. The meters come after the knock
// lookups, so a knock never uses up a source's allowance.
//
// A locked-out source's SYNs are looked up only within one budget that
// all locked-out sources share, v4 and v6 together: the single limit rule
// of the lockedout chain, one token bucket of LockedLookup. Within it the
// SYN returns to syn and is looked up like any other (a miss then goes on
// to the meters and lockout); past it, it is dropped, or reset at a reset
// port, without a lookup. Two threats pull apart here. A guesser must not
// get more lookups by sending faster: with lookups for every SYN of a
// locked-out source, one sender's bandwidth (565,000 SYNs a second on a
// 2-core VM) would be its guess rate. And a spoofer who sends a flood with
// a victim's source address must not lock the victim out: with no lookups
// for a locked-out source, none of its knocks would get in. The budget
// bounds the first at the guess limit per fresh source plus LockedLookup a
// second, for all guessers together, and keeps the second to: every knock
// gets in while the locked-out traffic stays under the budget, and each
// is looked up with a chance of about budget/flood above it (the client's
// SYN retransmissions each take their own chance). The budget is one rule,
// not a meter per source, because a per-source budget would give a
// guesser with many addresses that many budgets.
//
// The order is measured (scripts/bench/synrules.sh; the figures are in
// docs/development.md): the bounded lookups cost about what a lookup of
// every SYN costs. Checking limited4/6 before the fib check would save
// about 0.3 of a plain drop's cost on a locked-out SYN's path, but would
// drop a locked-out (possibly spoofed) source's forwarded SYNs to the
// protected port numbers too, so it is not done.
func (r Rules) ruleList() []ruleDesc {
	mark := fmt.Sprintf("0x%08x", r.MarkBit)
	var out []ruleDesc
	add := func(ds ...ruleDesc) { out = append(out, ds...) }
	syn := tcpFlags("syn / fin,syn,rst,ack", tcpFIN|tcpSYN|tcpRST|tcpACK, tcpSYN)
	// The knocks' sets: valid and used, and with SourcePort the 48-bit
	// knocks' valid_sp and used_sp.
	type knockSets struct {
		key         string
		load        func() []expr.Any
		valid, used string
	}
	knocks := []knockSets{{dportSeqKeyText, loadDportSeq, SetValid, SetUsed}}
	if r.SourcePort {
		knocks = append(knocks, knockSets{sportKeyText, loadSportDportSeq, SetValidSP, SetUsedSP})
	}

	add(rule(ChainInput, dportIn(SetPorts, false), jump(ChainKnock)))

	// The admitted-flow rule comes first: a SYN retransmitted after the
	// server's SYN-ACK went out is "ct state established" (conntrack saw
	// the reply), and must get the packet mark all the same.
	add(rule(ChainKnock,
		part{"ct mark & " + mark + " == " + mark, ctBits(expr.CtKeyMARK, r.MarkBit, expr.CmpOpEq, r.MarkBit)},
		r.markPacket(),
		accept()),
		rule(ChainKnock,
			ctState("established,related", ctStateEstablished|ctStateRelated),
			accept()))
	for _, k := range knocks {
		add(rule(ChainKnock,
			syn,
			ctState("new", ctStateNew),
			part{k.key + " @" + k.valid, append(k.load(), &expr.Lookup{SourceRegister: regKey, SetName: k.valid})},
			part{k.key + " != @" + k.used, append(k.load(), &expr.Lookup{SourceRegister: regKey, SetName: k.used, Invert: true})},
			part{"add @" + k.used + " { " + k.key + " }", append(k.load(), &expr.Dynset{SrcRegKey: regKey, SetName: k.used, Operation: unix.NFT_DYNSET_OP_ADD})},
			r.markAdmitted(mark),
			r.markPacket(),
			logGroup(r.LogGroup),
			counter(),
			accept()).as(roleAdmit))
	}
	for _, v6 := range []bool{false, true} {
		add(rule(ChainKnock, tcpFlags("! syn", tcpSYN, 0), ctState("new", ctStateNew), sessionLookup(v6), accept()))
	}
	add(r.unknocked(ChainKnock)...)

	add(rule(ChainPre,
		syn,
		part{"tcp dport @ports", []expr.Any{loadDport(), &expr.Lookup{SourceRegister: regKey, SetName: SetPorts}}},
		part{"fib daddr type local", []expr.Any{
			&expr.Fib{Register: regKey, ResultADDRTYPE: true, FlagDADDR: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: ne32(unix.RTN_LOCAL)},
		}},
		jump(ChainSyn)))

	// A locked-out source's SYN is looked up only within the budget
	// all locked-out sources share (one chain, one bucket); past it, it
	// is dropped (or reset) unlooked.
	limits := !r.Guess.Off() || !r.Global.Off()
	if limits {
		for _, f := range families {
			add(rule(ChainSyn, r.source(f.v6, "@"+f.limited), jump(ChainLockedOut)))
		}
	}
	// The 48-bit knocks pass the limiters as the others do.
	for _, k := range knocks {
		for _, set := range []string{k.valid, k.used} {
			add(rule(ChainSyn,
				part{k.key + " @" + set, append(append(isTCP(), k.load()...), &expr.Lookup{SourceRegister: regKey, SetName: set})},
				accept()))
		}
	}
	// The meters come after the knock lookups, so a knock never uses up
	// a source's allowance. Each ends in a reset at a port in reset mode,
	// as a closed port answers, and in a drop elsewhere.
	if !r.Guess.Off() {
		for _, f := range families {
			add(rule(ChainSyn, dportIn(SetReset, false), r.meter(f.v6, f.guess), r.lockout(f.v6, f.limited, true), counter(), reject()).as(roleLockout),
				rule(ChainSyn, dportIn(SetReset, true), r.meter(f.v6, f.guess), r.lockout(f.v6, f.limited, true), counter(), drop()).as(roleLockout))
		}
	}
	if !r.Global.Off() {
		add(rule(ChainSyn, limit(r.Global, true), jump(ChainLockout)))
	}
	add(r.unknocked(ChainSyn)...)
	if limits {
		for _, f := range families {
			add(rule(ChainLockout, dportIn(SetReset, false), r.lockout(f.v6, f.limited, false), counter(), reject()).as(roleLockout),
				rule(ChainLockout, r.lockout(f.v6, f.limited, false), counter(), drop()).as(roleLockout))
		}
		if !r.LockedLookup.Off() {
			add(rule(ChainLockedOut, limit(r.LockedLookup, false), verdictReturn()))
		}
		add(rule(ChainLockedOut, dportIn(SetReset, false), counter(), reject()).as(roleLockout),
			rule(ChainLockedOut, counter(), drop()).as(roleLockout))
	}
	return out
}

// families are the address families' meters and lockout sets.
var families = []struct {
	v6             bool
	guess, limited string
}{{false, SetGuess4, SetLimited4}, {true, SetGuess6, SetLimited6}}

// dportIn is "tcp dport @SET", or with not "tcp dport != @SET". The ports
// sets are bitmaps, so the lookup costs next to nothing.
func dportIn(set string, not bool) part {
	op := " @"
	if not {
		op = " != @"
	}
	return part{"tcp dport" + op + set, append(isTCP(), loadDport(), &expr.Lookup{SourceRegister: regKey, SetName: set, Invert: not})}
}

func reject() part {
	return part{"reject with tcp reset", []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}}
}

// unknocked returns the rules that end chain for a packet nothing
// admitted: counted per port, sampled to the drop log, answered with a
// reset at a port in reset mode, dropped at the others.
func (r Rules) unknocked(chain string) []ruleDesc {
	out := []ruleDesc{rule(chain, dportIn(SetUnknocked, false))}
	if r.DropLogGroup != 0 {
		out = append(out, rule(chain,
			part{fmt.Sprintf("limit rate %d/second", DropLogRate), []expr.Any{
				&expr.Limit{Type: expr.LimitTypePkts, Rate: DropLogRate, Unit: expr.LimitTimeSecond, Burst: 5},
			}},
			logGroup(r.DropLogGroup)))
	}
	return append(out,
		rule(chain, dportIn(SetReset, false), counter(), reject()).as(roleReject),
		rule(chain, counter(), drop()).as(roleDrop))
}

// sourceKey loads the packet's source prefix (ip saddr, or ip6 saddr
// masked to Prefix6; ip saddr masked where Prefix4 is under 32) into
// register 1, and returns its text.
func (r Rules) sourceKey(v6 bool) (string, []expr.Any) {
	text, ex := r.sourceLoad(v6)
	fam := byte(unix.NFPROTO_IPV4)
	if v6 {
		fam = unix.NFPROTO_IPV6
	}
	return text, append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: regKey},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: []byte{fam}},
	}, ex...)
}

// sourceLoad is sourceKey without the family check, for a rule that made
// it already (nft writes the check once per rule).
func (r Rules) sourceLoad(v6 bool) (string, []expr.Any) {
	p4, p6 := r.prefixes()
	off, n, bitsLen, name := uint32(12), uint32(4), int(p4), "ip saddr"
	if v6 {
		off, n, bitsLen, name = 8, 16, int(p6), "ip6 saddr"
	}
	ex := []expr.Any{
		&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
	}
	if bitsLen == int(n)*8 {
		return name, ex
	}
	mask := make([]byte, n)
	for i := range mask {
		switch {
		case bitsLen >= 8*(i+1):
			mask[i] = 0xff
		case bitsLen > 8*i:
			mask[i] = byte(0xff << (8 - (bitsLen - 8*i)))
		}
	}
	ex = append(ex, &expr.Bitwise{SourceRegister: regKey, DestRegister: regKey, Len: n, Mask: mask, Xor: make([]byte, n)})
	var a netip.Addr
	if v6 {
		a = netip.AddrFrom16([16]byte(mask))
	} else {
		a = netip.AddrFrom4([4]byte(mask))
	}
	return name + " & " + a.String(), ex
}

// source is "SOURCE @SET": the source prefix is in set (nft writes "=="
// after a mask).
func (r Rules) source(v6 bool, set string) part {
	text, ex := r.sourceKey(v6)
	op := " "
	if strings.Contains(text, "&") {
		op = " == "
	}
	return part{text + op + set, append(ex, &expr.Lookup{SourceRegister: regKey, SetName: strings.TrimPrefix(set, "@")})}
}

// meter is "update @SET { SOURCE limit rate over R burst B packets }":
// the source's meter counts the packet and matches when it is over.
func (r Rules) meter(v6 bool, set string) part {
	text, ex := r.sourceKey(v6)
	lim := limit(r.Guess, true)
	return part{"update @" + set + " { " + text + " " + lim.text + " }", append(ex, &expr.Dynset{
		SrcRegKey: regKey, SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: lim.exprs,
	})}
}

// lockout is "add @SET { SOURCE }": the source is locked out. checked
// says the rule checked the family already (after a meter).
func (r Rules) lockout(v6 bool, set string, checked bool) part {
	text, ex := r.sourceKey(v6)
	if checked {
		text, ex = r.sourceLoad(v6)
	}
	return part{"add @" + set + " { " + text + " }", append(ex, &expr.Dynset{
		SrcRegKey: regKey, SetName: set, Operation: unix.NFT_DYNSET_OP_ADD,
	})}
}

// limit is "limit rate [over ]R/UNIT [burst B packets]" (nft leaves its
// default burst of 5 out): with over, the packet is over the limit;
// without, it is within it (and takes a token from it).
func limit(l Limit, over bool) part {
	unit, _ := l.Unit.expr()
	text := "limit rate "
	if over {
		text += "over "
	}
	text += fmt.Sprintf("%d/%s", l.Rate, l.Unit)
	if l.Burst != 0 && l.Burst != 5 {
		text += fmt.Sprintf(" burst %d packets", l.Burst)
	}
	return part{text, []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(l.Rate), Over: over, Unit: unit, Burst: l.Burst}}}
}
