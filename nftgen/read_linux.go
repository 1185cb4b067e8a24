//go:build linux

package nftgen

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Conn applies and reads seqknock tables in one network namespace.
type Conn struct {
	// NetNS is a file descriptor of the network namespace to work in; 0 is
	// the namespace of the calling thread.
	NetNS int

	own    ownPorts // sockets our batches went out on, for Watch
	watch  watchers // the sockets of running Watches, for send
	inGap  func()   // tests: runs while the watches are out of the group
	onRead func()   // tests: runs at each read of the table

	// made is what the last Apply or AddValid left in the table
	// (made_linux.go).
	madeMu sync.Mutex
	made   *madeState

	// sender is the socket batches go out on, kept open so that its port
	// id is known before the first batch: Watch filters the events of our
	// own transactions out in the kernel (see Watch).
	sendMu sync.Mutex
	sender *netlink.Conn
}

// nft returns a google/nftables Conn in c's namespace. With
// nftables.AsLasting it keeps one socket for all its requests (the caller
// closes it with CloseLasting) instead of dialling one per request: a
// sync's reads make a dozen.
func (c *Conn) nft(opts ...nftables.ConnOption) (*nftables.Conn, error) {
	if c.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(c.NetNS))
	}
	return nftables.New(opts...)
}

// Read returns the live state of table. A missing table is not an error:
// Live.Exists is false.
func (c *Conn) Read(table string) (*Live, error) {
	return c.read(table, true)
}

func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT)
}

func (c *Conn) read(table string, elements bool) (*Live, error) {
	if c.onRead != nil {
		c.onRead()
	}
	nc, err := c.nft(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	defer nc.CloseLasting()
	live := &Live{}
	t, err := nc.ListTableOfFamily(table, nftables.TableFamilyINet)
	if err != nil {
		if isNotExist(err) {
			return live, nil
		}
		return nil, fmt.Errorf("read table %s: %w", table, err)
	}
	live.Exists = true
	sets, err := nc.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("read sets of %s: %w", table, err)
	}
	for _, s := range sets {
		if why := foreignSet(s); why != "" {
			if live.Foreign == "" {
				live.Foreign = why
			}
			continue
		}
		// Every set's elements but the sessions sets' and the meters', and
		// valid's and valid_sp's only with elements. The used sets are
		// read also without: they hold only spent knocks, few next to the
		// valid set.
		var els []nftables.SetElement
		switch s.Name {
		case SetSessions4, SetSessions6, SetGuess4, SetGuess6:
		case SetValid, SetValidSP:
			if !elements {
				break
			}
			fallthrough
		default:
			if els, err = nc.GetSetElements(s); err != nil {
				return nil, fmt.Errorf("read set %s: %w", s.Name, err)
			}
		}
		switch s.Name {
		case SetPorts:
			live.Ports = portsOf(els)
		case SetValid, SetValidSP:
			live.SPSets = live.SPSets || s.Name == SetValidSP
			live.ValidCount += len(els)
			live.ValidKeys = append(live.ValidKeys, keysOf(els)...)
		case SetUnknocked:
			live.Unknocked = map[uint16]Counter{}
			for _, e := range els {
				if len(e.Key) >= 2 && e.Counter != nil {
					live.Unknocked[uint16(e.Key[0])<<8|uint16(e.Key[1])] = Counter{Packets: e.Counter.Packets, Bytes: e.Counter.Bytes}
				}
			}
		case SetReset:
			live.ResetPorts = portsOf(els)
		case SetLimited4, SetLimited6:
			live.LockedOut += len(els)
		case SetUsed, SetUsedSP:
			if s.Name == SetUsed {
				live.UsedExists = true
				live.UsedTimeout = s.Timeout
				live.UsedSize = s.Size
			}
			live.UsedCount += len(els)
			if elements {
				live.UsedKeys = append(live.UsedKeys, keysOf(els)...)
			}
		}
	}
	if err := c.readRules(nc, t, live); err != nil {
		return nil, err
	}
	return live, nil
}

func (c *Conn) readRules(nc *nftables.Conn, t *nftables.Table, live *Live) error {
	chains, err := nc.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("read chains of %s: %w", t.Name, err)
	}
	rules := map[string][]*nftables.Rule{}
	for _, ch := range chains {
		if ch.Table.Name != t.Name {
			continue
		}
		if why := foreignChain(ch); why != "" {
			if live.Foreign == "" {
				live.Foreign = why
			}
			continue
		}
		rs, err := nc.GetRules(t, ch)
		if err != nil {
			return fmt.Errorf("read rules of %s %s: %w", t.Name, ch.Name, err)
		}
		rules[ch.Name] = rs
	}
	// The rules are current when every rule carries this version's
	// fingerprint for one set of parameters, and the counts are those the
	// parameters build.
	fp, same := "", true
	for _, rs := range rules {
		for _, r := range rs {
			v := string(r.UserData)
			if fp == "" {
				fp = v
			}
			if v != fp {
				same = false
			}
		}
	}
	want := map[string][]ruleDesc{}
	if r, ok := parseFingerprint([]byte(fp)); ok && same {
		for _, d := range r.ruleList() {
			want[d.chain] = append(want[d.chain], d)
		}
		current := true
		for _, c := range chainSpecs {
			current = current && len(rules[c.name]) == len(want[c.name])
		}
		if current {
			live.Rules, live.RulesCurrent = r, true
		}
	}
	sums := map[role]*Counter{roleAdmit: &live.Admitted, roleDrop: &live.Dropped, roleReject: &live.Rejected, roleLockout: &live.Lockout}
	for ch, rs := range rules {
		for i, r := range rs {
			var counter *expr.Counter
			ro := roleNone
			if live.RulesCurrent {
				ro = want[ch][i].role
			}
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Counter:
					counter = e
				case *expr.Dynset:
					if !live.RulesCurrent && ch == ChainKnock {
						ro = roleAdmit
					}
				case *expr.Verdict:
					if !live.RulesCurrent && ch == ChainKnock && e.Kind == expr.VerdictDrop && ro == roleNone {
						ro = roleDrop
					}
				}
			}
			if sum := sums[ro]; counter != nil && sum != nil {
				sum.add(Counter{Packets: counter.Packets, Bytes: counter.Bytes})
			}
		}
	}
	return nil
}

// ReadCounters is Read without counting set elements, which for a large
// valid set costs a full dump.
func (c *Conn) ReadCounters(table string) (*Live, error) {
	return c.read(table, false)
}

// usedElements returns the elements of the used set name (used or
// used_sp) with their remaining time as timeout, to carry them into a
// recreated set.
func (c *Conn) usedElements(table, name string) ([]nftables.SetElement, error) {
	nc, err := c.nft()
	if err != nil {
		return nil, err
	}
	var out []nftables.SetElement
	err = readUsed(nc, table, name, func(key []byte, left time.Duration) {
		out = append(out, nftables.SetElement{Key: key, Timeout: left})
	})
	return out, err
}

// readUsed calls fn with each element of the used set name on nc that
// has time left (the kernel's expiry, else its timeout).
func readUsed(nc *nftables.Conn, table, name string, fn func(key []byte, left time.Duration)) error {
	s, err := nc.GetSetByName(Table(table), name)
	if err != nil {
		return fmt.Errorf("read set %s: %w", name, err)
	}
	els, err := nc.GetSetElements(s)
	if err != nil {
		return fmt.Errorf("read set %s: %w", name, err)
	}
	for _, e := range els {
		left := e.Expires
		if left <= 0 {
			left = e.Timeout
		}
		if left > 0 {
			fn(e.Key, left)
		}
	}
	return nil
}

// portsOf returns the ports of a ports set's elements, sorted.
func portsOf(els []nftables.SetElement) []uint16 {
	var out []uint16
	for _, e := range els {
		if len(e.Key) >= 2 {
			out = append(out, uint16(e.Key[0])<<8|uint16(e.Key[1]))
		}
	}
	return sortPorts(out)
}

func keysOf(els []nftables.SetElement) []Key {
	out := make([]Key, 0, len(els))
	for _, e := range els {
		if k, ok := keyOf(e.Key); ok {
			out = append(out, k)
		}
	}
	return out
}

// Spent returns the knocks in table's used set and used_sp set, each
// expiring when its entry will (now plus its remaining time). A missing
// table or set gives none and no error.
func (c *Conn) Spent(table string, now time.Time) ([]Element, error) {
	nc, err := c.nft(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("read spent knocks: %w", err)
	}
	defer nc.CloseLasting()
	var out []Element
	for _, name := range []string{SetUsed, SetUsedSP} {
		err := readUsed(nc, table, name, func(key []byte, left time.Duration) {
			if k, ok := keyOf(key); ok {
				out = append(out, Element{SPort: k.SPort, Port: k.Port, ISN: k.ISN, Expires: now.Add(left)})
			}
		})
		if err != nil && !isNotExist(err) {
			return nil, err
		}
	}
	return out, nil
}
