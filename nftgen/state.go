package nftgen

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"
)

// Names of the sets and chains in the table.
const (
	SetPorts = "ports"
	SetValid = "valid"
	SetUsed  = "used"
	// The knocks of services that bind the client's source port (48-bit
	// knocks), keyed by tcp sport . tcp dport . tcp sequence; the sets
	// exist only while Rules.SourcePort is on.
	SetValidSP = "valid_sp"
	SetUsedSP  = "used_sp"
	// The connections that exist on the host, by address family: a
	// packet of one may be picked up mid-stream (see ruleList).
	SetSessions4 = "sessions4"
	SetSessions6 = "sessions6"
	// Ports in reset mode, and a per-port counter of unknocked packets
	// (the set's elements carry counters; it is only added to).
	SetReset     = "rstports"
	SetUnknocked = "unknocked"
	// The guess meters and the locked-out sources, by address family.
	SetGuess4    = "guess4"
	SetGuess6    = "guess6"
	SetLimited4  = "limited4"
	SetLimited6  = "limited6"
	ChainInput   = "input"
	ChainKnock   = "knock"
	ChainPre     = "pre"
	ChainSyn     = "syn"
	ChainLockout = "lockout"
	// ChainLockedOut holds the shared lookup budget of locked-out sources.
	ChainLockedOut = "lockedout"
)

// PrePriority is the pre chain's hook priority: raw, before conntrack.
const PrePriority = -300

// DefaultUsedSize is the smallest capacity given to the used set; it is the
// size nft gives a dynamic set when none is named.
const DefaultUsedSize = 65535

// InputPriority is the input chain's hook priority: filter - 10, so the knock
// check runs before a host firewall's usual filter chains.
const InputPriority = -10

// Element is one valid knock: a SYN to Port with sequence number ISN is
// admitted until Expires. SPort, when not 0, is the source port the SYN
// must come from too (a service with bind_source_port): the knock goes
// into valid_sp, not valid.
type Element struct {
	SPort   uint16
	Port    uint16
	ISN     uint32
	Expires time.Time
}

// key is the element's identity: source port, port and ISN in one word.
func (e Element) key() uint64 { return uint64(e.SPort)<<48 | uint64(e.Port)<<32 | uint64(e.ISN) }

// State is the desired content of the seqknock table.
type State struct {
	// Table is the name of the inet table.
	Table string
	// Ports are the protected TCP ports.
	Ports []uint16
	// ResetPorts are the protected ports in reset mode: an unknocked
	// packet there is answered as at a closed port. Each is also in Ports.
	ResetPorts []uint16
	// Rules are the parameters of the chains' rules (the ct mark bit).
	Rules
	// UsedTimeout is how long a spent knock stays in the used set; at least
	// the window length.
	UsedTimeout time.Duration
	// Valid holds the knocks valid now.
	Valid []Element
	// Knocks, when not nil, yields further valid knocks (in the daemon,
	// all of them), derived as Apply writes them: a large config's
	// knocks are never all held at once. Unlike Valid's, knocks that
	// collide on (port, isn) are not merged: the kernel keeps one element,
	// with the timeout of the one written last.
	Knocks func(yield func(Element) bool)
	// KnockCount is how many knocks the whole window holds (Valid and
	// Knocks together, or more: see AddValid); it sizes the used set. 0:
	// len(Valid).
	KnockCount int
	// Spent holds knocks already used (Expires: when their used entry
	// ends). Apply puts them into the used set with their remaining time
	// and leaves them out of valid, so a rebuilt table, or one whose used
	// set was lost, does not admit them again.
	Spent []Element
	// Sessions are the TCP connections to the protected ports that exist
	// on the host (from sock_diag): a non-SYN packet that conntrack sees
	// as new is accepted only when it belongs to one of them.
	Sessions []Session
}

// Session is one connection as an incoming packet of it carries it: Src is
// the peer, Dst the local address and protected port.
type Session struct {
	Src, Dst netip.AddrPort
}

// Validate checks the parts of a State that the kernel would refuse or that
// would build a ruleset other than the one docs/design.md describes.
func (s State) Validate() error {
	if s.Table == "" || len(s.Table) > 255 {
		return fmt.Errorf("table name must be 1 to 255 bytes")
	}
	if err := s.Rules.validate(); err != nil {
		return err
	}
	if len(s.Ports) == 0 {
		return errors.New("no protected ports")
	}
	seen := map[uint16]bool{}
	for _, p := range s.Ports {
		if p == 0 {
			return errors.New("port 0 cannot be protected")
		}
		if seen[p] {
			return fmt.Errorf("port %d listed twice", p)
		}
		seen[p] = true
	}
	for _, p := range s.ResetPorts {
		if !seen[p] {
			return fmt.Errorf("reset port %d is not protected", p)
		}
	}
	if !s.SourcePort {
		for _, e := range s.Valid {
			if e.SPort != 0 {
				return fmt.Errorf("knock from source port %d to port %d without source-port rules", e.SPort, e.Port)
			}
		}
	}
	if s.UsedTimeout < time.Second {
		return fmt.Errorf("used timeout %v is under 1s", s.UsedTimeout)
	}
	return nil
}

// usedSize returns the capacity the used set gets: DefaultUsedSize or the
// number of valid elements, whichever is larger.
func (s State) usedSize() uint32 {
	if n := max(len(s.Valid), s.KnockCount); n > DefaultUsedSize {
		return uint32(n)
	}
	return DefaultUsedSize
}

// ValidList returns Valid followed by what Knocks yields: every valid
// knock, held at once (for tests and small configs).
func (s State) ValidList() []Element {
	out := append([]Element(nil), s.Valid...)
	if s.Knocks != nil {
		s.Knocks(func(e Element) bool {
			out = append(out, e)
			return true
		})
	}
	return out
}

// sortedPorts returns the ports in ascending order.
func (s State) sortedPorts() []uint16 { return sortPorts(s.Ports) }

func sortPorts(ports []uint16) []uint16 {
	ps := append([]uint16(nil), ports...)
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}
