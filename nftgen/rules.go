package nftgen

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Rules are the parameters of the chains' rules. Everything a rule depends
// on is a field here, and everything about the rules is derived from it in
// this file: the expressions Apply installs (ruleList), the
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
	// Guess, when its rate is not 0, limits each source's unknocked SYNs
	// to the protected ports: a source over it is locked out (its unknocked
	// SYNs dropped, or reset at a reset port, without reaching the meters)
	// for LockoutTimeout at a time. Its knocks are still looked up first.
	Guess Limit
	// Prefix4 and Prefix6 are the prefix lengths that make one source for
	// Guess: 32 and 64 by default.
	Prefix4, Prefix6 uint8
	// Global, when its rate is not 0, caps unknocked SYNs from all sources
	// together: over it, every source that sends one is locked out. Knocks
	// are looked up first, so it never touches a knocked SYN.
	Global Limit
	// SourcePort, when set, adds the lookups of 48-bit knocks: a SYN
	// whose tcp sport . tcp dport . tcp sequence is in valid_sp is
	// admitted like one whose tcp dport . tcp sequence is in valid (the
	// services with bind_source_port put their knocks there).
	SourcePort bool
}

// Limit is a packet rate as nft writes it: Rate packets per Unit, with
// Burst packets more allowed at once (nft's burst: on top of the rate).
type Limit struct {
	Rate  uint32
	Unit  RateUnit
	Burst uint32
}

// RateUnit is the time unit of a Limit.
type RateUnit string

// The units a Limit may use.
const (
	PerSecond RateUnit = "second"
	PerMinute RateUnit = "minute"
	PerHour   RateUnit = "hour"
)

// Off reports whether the limit is off (rate 0).
func (l Limit) Off() bool { return l.Rate == 0 }

// String is "10/second+20" ("0" when off).
func (l Limit) String() string {
	if l.Off() {
		return "0"
	}
	return fmt.Sprintf("%d/%s+%d", l.Rate, l.Unit, l.Burst)
}

// PerSecond is the limit's rate in packets a second.
func (l Limit) PerSecond() float64 {
	switch l.Unit {
	case PerMinute:
		return float64(l.Rate) / 60
	case PerHour:
		return float64(l.Rate) / 3600
	}
	return float64(l.Rate)
}

func (u RateUnit) expr() (expr.LimitTime, bool) {
	switch u {
	case PerSecond:
		return expr.LimitTimeSecond, true
	case PerMinute:
		return expr.LimitTimeMinute, true
	case PerHour:
		return expr.LimitTimeHour, true
	}
	return 0, false
}

// ParseLimit reads "N/second", "N/minute" or "N/hour" (burst left 0), or
// "0" for off.
func ParseLimit(s string) (Limit, error) {
	if s == "0" {
		return Limit{}, nil
	}
	n, u, ok := strings.Cut(s, "/")
	rate, err := strconv.ParseUint(n, 10, 32)
	if !ok || err != nil || rate == 0 {
		return Limit{}, fmt.Errorf("%q: want N/second, N/minute or N/hour (N at least 1), or \"0\" for off", s)
	}
	l := Limit{Rate: uint32(rate), Unit: RateUnit(u)}
	if _, ok := l.Unit.expr(); !ok {
		return Limit{}, fmt.Errorf("%q: unit %q is not second, minute or hour", s, u)
	}
	return l, nil
}

func parseLimitField(s string) (Limit, error) {
	if s == "0" {
		return Limit{}, nil
	}
	r, b, ok := strings.Cut(s, "+")
	if !ok {
		return Limit{}, fmt.Errorf("%q: no burst", s)
	}
	l, err := ParseLimit(r)
	if err != nil {
		return Limit{}, err
	}
	burst, err := strconv.ParseUint(b, 10, 32)
	if err != nil {
		return Limit{}, fmt.Errorf("burst: %w", err)
	}
	l.Burst = uint32(burst)
	return l, nil
}

// DropLogRate is how many dropped packets a second the drop log samples.
const DropLogRate = 10

// GlobalBurst is the burst of the global cap: nft's default, which it
// leaves out of the listing.
const GlobalBurst = 5

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

func (r Rules) validate() error {
	if bits.OnesCount32(r.MarkBit) != 1 {
		return fmt.Errorf("ct mark bit %#x must have exactly one bit set", r.MarkBit)
	}
	for _, l := range []Limit{r.Guess, r.Global} {
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

// String spells the parameters as the fingerprint stores them:
// "mark=0x800000", then " log=N" when LogGroup is set, " droplog=M"
// when DropLogGroup is, " guess=10/second+20 prefix=32/64" when Guess is
// on, " global=1000/second+5" when Global is and " sport" when
// SourcePort is.
func (r Rules) String() string {
	s := fmt.Sprintf("mark=%#08x", r.MarkBit)
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
		case "guess", "global":
			l, err := parseLimitField(v)
			if err != nil {
				return Rules{}, fmt.Errorf("%s: %w", k, err)
			}
			if k == "guess" {
				r.Guess = l
			} else {
				r.Global = l
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
const RulesVersion = "seqknock/rules/v5"

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
// and its text as `nft list ruleset` shows it (counters at zero), and what
// its counter counts, if it has one.
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

// chainOrder is the table's chains in the order Apply creates and nft
// lists them.
var chainOrder = []string{ChainInput, ChainKnock, ChainPre, ChainSyn, ChainLockout}

// ruleList returns every rule of the table, in chain order:
//
//	chain input (hook input, priority filter - 10):
//	tcp dport @ports jump knock
//	chain knock:
//	ct state established,related accept
//	ct mark & BIT == BIT accept
//	tcp flags syn / fin,syn,rst,ack ct state new
//	  tcp dport . tcp sequence @valid tcp dport . tcp sequence != @used
//	  add @used { tcp dport . tcp sequence } ct mark set ct mark | BIT
//	  [log group N] counter accept
//	[tcp flags syn / fin,syn,rst,ack ct state new                (SourcePort on)
//	  tcp sport . tcp dport . tcp sequence @valid_sp
//	  tcp sport . tcp dport . tcp sequence != @used_sp
//	  add @used_sp { tcp sport . tcp dport . tcp sequence }
//	  ct mark set ct mark | BIT [log group N] counter accept]
//	tcp flags ! syn ct state new ip saddr . tcp sport . ip daddr . tcp dport @sessions4 accept
//	tcp flags ! syn ct state new ip6 saddr . tcp sport . ip6 daddr . tcp dport @sessions6 accept
//	[limit rate 10/second log group M]
//	tcp dport @unknocked
//	tcp dport @rstports counter reject with tcp reset
//	counter drop
//	chain pre (hook prerouting, priority raw: before conntrack):
//	tcp flags syn / fin,syn,rst,ack tcp dport @ports fib daddr type local jump syn
//	chain syn:
//	tcp dport . tcp sequence @valid accept
//	tcp dport . tcp sequence @used accept
//	[tcp sport . tcp dport . tcp sequence @valid_sp accept   (SourcePort on)
//	tcp sport . tcp dport . tcp sequence @used_sp accept]
//	[tcp dport @rstports ip saddr @limited4 counter reject with tcp reset
//	ip saddr @limited4 counter drop                         (a limit on)
//	tcp dport @rstports ip6 saddr & PREFIX == @limited6 counter reject with tcp reset
//	ip6 saddr & PREFIX == @limited6 counter drop]
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
//
// The two sessions rules are not in DESIGN.md's shape. Conntrack picks up
// a connection it does not know (one open before the table was installed,
// while conntrack was idle, or any after `conntrack -F`) mid-stream: its
// next packet is "ct state new" without SYN, and the drop rule would kill
// it. Such a packet is accepted only when its 4-tuple is a connection that
// really exists on this host: the sessions sets hold the established
// sockets on the protected ports, from sock_diag, refilled at every sync
// and whenever conntrack loses entries, and added to (AddSessions) as each
// admission is read from the admit rule's nflog. A non-SYN packet of any other flow
// (a scanner's ACK, FIN or data) is treated like an unknocked SYN: dropped,
// or at a port in reset mode answered as a closed port answers it, so a
// guessed SYN cookie never gets in.
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
// into limited4/6 for LockoutTimeout, and until then each of its unknocked
// SYNs is dropped (or reset) without reaching a meter, the drop log or the
// per-port counters. Knocks are looked up first, before any lockout or
// meter: a knock never uses up a source's allowance, and a lockout that a
// spoofer earns with a victim's source address never drops the victim's
// knocks. The price is that every SYN, a locked-out flood's too, is looked
// up in valid and used, so the limits no longer slow down guessing: they
// bound the work and the log lines an unknocked flood causes, not its
// odds (see the odds check-config prints).
//
// What an unknocked SYN costs (issue 16; scripts/bench/synrules.sh on the
// 2-core VM, kernel 6.18, 2026-11-24: each shape built with nft -f in a
// throwaway namespace, 400,000 random-ISN SYNs from benchtool flood pinned
// to one CPU, perf cpu-clock samples of that CPU; medians of 5 interleaved
// rounds, ns per SYN, inflated alike by the sampling; net_rx_action is the
// SYN's whole receive path, with its ratio to the plain drop):
//
//	ruleset at priority raw                         nft_do_chain  net_rx_action
//	plain "tcp dport 2202 drop" (no seqknock table)          531     1011 (1.00)
//	pre: tcp flags syn ... tcp dport @ports drop             440      943 (0.93)
//	+ fib daddr type local                                   671     1163 (1.15)
//	+ jump syn, "counter drop" there                         757     1194 (1.18)
//	+ @valid and @used lookups (accept)                     1227     1740 (1.72)
//	+ tcp dport @unknocked (per-port counter)               1438     1931 (1.91)
//	+ drop log limit, @rstports, counter drop: limits off   1650     2171 (2.15)
//	limits on, the flooder locked out (@limited4 drop)       985     1539 (1.52)
//	  the same with @limited4 before the fib check           701     1245 (1.23)
//
// Those lockout rows are of the old order, @limited4 before the knock
// lookups. The order above (knocks first) against it, interleaved in one
// run (ONLY="0 7 8" synrules.sh 3 200000, 2026-12-07, a lighter-loaded
// VM, so lower figures throughout):
//
//	plain "tcp dport 2202 drop"                               79      251 (1.00)
//	limits on, the flooder locked out, knocks first          313      461 (1.84)
//	  the old order, lockout before the knocks               208      354 (1.41)
//
// 1.30x the old order's receive path: the valid and used lookups (and the
// rstports bitmap) that every locked-out SYN now costs.
//
// Each lookup in a hash set (valid, used, unknocked, limited4) costs about
// 100-250 ns, the fib check about 230-330 ns; the ports bitmap is nearly
// free. Runs vary: an earlier set of 5 rounds (the full table, by hand)
// gave 2.27 for limits off, 1.29 for the locked-out path and 0.98 with
// @limited4 first. Under a one-source flood the guess limiter makes the
// path a shorter one: with the old order 1.5-1.6x a plain drop in the
// bench's figure 2 (which counts the CPU's softirq time), with knocks
// first about 1.3x that (table above). What is left there is the fib
// check, the knock lookups and the lockout lookup. Checking limited4/6 before the fib check saves the
// fib check's ~0.3 of it, but would drop a locked-out source's forwarded
// SYNs to the protected port numbers too, so a spoofed source could be cut
// off from hosts behind this one; it is not done. A flood from many
// (spoofed) sources, each new to the meters, takes the long path with two
// set insertions per SYN: not measured.
func (r Rules) ruleList() []ruleDesc {
	mark := fmt.Sprintf("0x%08x", r.MarkBit)
	var out []ruleDesc
	add := func(ds ...ruleDesc) { out = append(out, ds...) }

	add(rule(ChainInput,
		part{"tcp dport @ports", append(isTCP(), loadDport(), &expr.Lookup{SourceRegister: regKey, SetName: SetPorts})},
		jump(ChainKnock)))

	add(rule(ChainKnock,
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
			r.markAdmitted(mark),
			r.logAdmitted(),
			counter(),
			accept()).as(roleAdmit))
	if r.SourcePort {
		add(rule(ChainKnock,
			tcpFlags("syn / fin,syn,rst,ack", tcpFIN|tcpSYN|tcpRST|tcpACK, tcpSYN),
			ctState("new", ctStateNew),
			part{sportKeyText + " @" + SetValidSP, append(loadSportDportSeq(), &expr.Lookup{SourceRegister: regKey, SetName: SetValidSP})},
			part{sportKeyText + " != @" + SetUsedSP, append(loadSportDportSeq(), &expr.Lookup{SourceRegister: regKey, SetName: SetUsedSP, Invert: true})},
			part{"add @" + SetUsedSP + " { " + sportKeyText + " }", append(loadSportDportSeq(), &expr.Dynset{SrcRegKey: regKey, SetName: SetUsedSP, Operation: unix.NFT_DYNSET_OP_ADD})},
			r.markAdmitted(mark),
			r.logAdmitted(),
			counter(),
			accept()).as(roleAdmit))
	}
	add(rule(ChainKnock,
		tcpFlags("! syn", tcpSYN, 0),
		ctState("new", ctStateNew),
		sessionLookup(false),
		accept()),
		rule(ChainKnock,
			tcpFlags("! syn", tcpSYN, 0),
			ctState("new", ctStateNew),
			sessionLookup(true),
			accept()))
	add(r.unknocked(ChainKnock)...)

	add(rule(ChainPre,
		tcpFlags("syn / fin,syn,rst,ack", tcpFIN|tcpSYN|tcpRST|tcpACK, tcpSYN),
		part{"tcp dport @ports", []expr.Any{loadDport(), &expr.Lookup{SourceRegister: regKey, SetName: SetPorts}}},
		part{"fib daddr type local", []expr.Any{
			&expr.Fib{Register: regKey, ResultADDRTYPE: true, FlagDADDR: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: ne32(unix.RTN_LOCAL)},
		}},
		jump(ChainSyn)))

	add(rule(ChainSyn,
		part{"tcp dport . tcp sequence @valid", append(append(isTCP(), loadDportSeq()...), &expr.Lookup{SourceRegister: regKey, SetName: SetValid})},
		accept()),
		rule(ChainSyn,
			part{"tcp dport . tcp sequence @used", append(append(isTCP(), loadDportSeq()...), &expr.Lookup{SourceRegister: regKey, SetName: SetUsed})},
			accept()))
	if r.SourcePort {
		// The 48-bit knocks pass the limiters as the others do.
		for _, set := range []string{SetValidSP, SetUsedSP} {
			add(rule(ChainSyn,
				part{sportKeyText + " @" + set, append(append(isTCP(), loadSportDportSeq()...), &expr.Lookup{SourceRegister: regKey, SetName: set})},
				accept()))
		}
	}
	// The limiters come after the knock lookups, so a knocked SYN is
	// never dropped by a lockout that a spoofer earned with its source.
	// Each ends in a reset at a port in reset mode, as a closed port
	// answers, and in a drop elsewhere.
	limits := !r.Guess.Off() || !r.Global.Off()
	if limits {
		for _, v6 := range []bool{false, true} {
			lock := SetLimited4
			if v6 {
				lock = SetLimited6
			}
			add(rule(ChainSyn, resetPort(), r.source(v6, "@"+lock), counter(), reject()).as(roleLockout),
				rule(ChainSyn, r.source(v6, "@"+lock), counter(), drop()).as(roleLockout))
		}
	}
	if !r.Guess.Off() {
		for _, v6 := range []bool{false, true} {
			meter, lock := SetGuess4, SetLimited4
			if v6 {
				meter, lock = SetGuess6, SetLimited6
			}
			add(rule(ChainSyn, resetPort(), r.meter(v6, meter), r.lockout(v6, lock, true), counter(), reject()).as(roleLockout),
				rule(ChainSyn, notResetPort(), r.meter(v6, meter), r.lockout(v6, lock, true), counter(), drop()).as(roleLockout))
		}
	}
	if !r.Global.Off() {
		add(rule(ChainSyn, limitOver(r.Global), jump(ChainLockout)))
	}
	add(r.unknocked(ChainSyn)...)
	if limits {
		for _, v6 := range []bool{false, true} {
			lock := SetLimited4
			if v6 {
				lock = SetLimited6
			}
			add(rule(ChainLockout, resetPort(), r.lockout(v6, lock, false), counter(), reject()).as(roleLockout),
				rule(ChainLockout, r.lockout(v6, lock, false), counter(), drop()).as(roleLockout))
		}
	}
	return out
}

// resetPort is "tcp dport @rstports": the port is in reset mode. The
// ports sets are bitmaps, so the lookup costs next to nothing.
func resetPort() part {
	return part{"tcp dport @" + SetReset, append(isTCP(), loadDport(), &expr.Lookup{SourceRegister: regKey, SetName: SetReset})}
}

// notResetPort is "tcp dport != @rstports".
func notResetPort() part {
	return part{"tcp dport != @" + SetReset, append(isTCP(), loadDport(), &expr.Lookup{SourceRegister: regKey, SetName: SetReset, Invert: true})}
}

func reject() part {
	return part{"reject with tcp reset", []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}}
}

// unknocked returns the rules that end chain for a packet nothing
// admitted: counted per port, sampled to the drop log, answered with a
// reset at a port in reset mode, dropped at the others.
func (r Rules) unknocked(chain string) []ruleDesc {
	out := []ruleDesc{rule(chain,
		part{"tcp dport @" + SetUnknocked, append(isTCP(), loadDport(), &expr.Lookup{SourceRegister: regKey, SetName: SetUnknocked})})}
	if r.DropLogGroup != 0 {
		out = append(out, rule(chain,
			part{fmt.Sprintf("limit rate %d/second", DropLogRate), []expr.Any{
				&expr.Limit{Type: expr.LimitTypePkts, Rate: DropLogRate, Unit: expr.LimitTimeSecond, Burst: 5},
			}},
			logGroup(r.DropLogGroup)))
	}
	return append(out,
		rule(chain, resetPort(), counter(), reject()).as(roleReject),
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
	lim := limitOver(r.Guess)
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

// limitOver is "limit rate over R/UNIT [burst B packets]" (nft leaves its
// default burst of 5 out).
func limitOver(l Limit) part {
	unit, _ := l.Unit.expr()
	text := fmt.Sprintf("limit rate over %d/%s", l.Rate, l.Unit)
	if l.Burst != 0 && l.Burst != 5 {
		text += fmt.Sprintf(" burst %d packets", l.Burst)
	}
	return part{text, []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(l.Rate), Over: true, Unit: unit, Burst: l.Burst}}}
}

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

// sportKeyText is the key of the 48-bit knocks' sets as nft writes it.
const sportKeyText = "tcp sport . tcp dport . tcp sequence"

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
	return part{"ct mark set ct mark | " + mark, []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: regKey},
		&expr.Bitwise{SourceRegister: regKey, DestRegister: regKey, Len: 4, Mask: ne32(^r.MarkBit), Xor: ne32(r.MarkBit)},
		&expr.Ct{Key: expr.CtKeyMARK, Register: regKey, SourceRegister: true},
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

func drop() part {
	return part{"drop", []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}}
}

func accept() part {
	return part{"accept", []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}}
}

func jump(chain string) part {
	return part{"jump " + chain, []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}}
}
