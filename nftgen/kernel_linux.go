//go:build linux

package nftgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elementsPerMessage bounds the elements in one NEWSETELEM message: an
// attribute's length is 16 bits, and an element takes about 40 bytes.
const elementsPerMessage = 1024

// Conn applies and reads seqknock tables in one network namespace.
type Conn struct {
	// NetNS is a file descriptor of the network namespace to work in; 0 is
	// the namespace of the calling thread.
	NetNS int
}

func (c *Conn) nft() (*nftables.Conn, error) {
	if c.NetNS != 0 {
		return nftables.New(nftables.WithNetNSFd(c.NetNS))
	}
	return nftables.New()
}

// Counter is a packet and byte count of a rule.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Live is what a table holds now.
type Live struct {
	Exists bool
	Ports  []uint16
	// ValidCount and UsedCount are the numbers of elements in the sets.
	ValidCount int
	UsedCount  int
	// Admitted counts SYNs admitted by a knock; Dropped everything the
	// knock chain dropped.
	Admitted Counter
	Dropped  Counter
	// RulesCurrent says whether both chains hold exactly the rules this
	// version of the package builds, for MarkBit.
	RulesCurrent bool
	MarkBit      uint32
	// UsedTimeout and UsedSize describe the used set, when it exists.
	UsedExists  bool
	UsedTimeout time.Duration
	UsedSize    uint32
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
	nc, err := c.nft()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
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
		switch s.Name {
		case SetPorts:
			els, err := nc.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("read set %s: %w", s.Name, err)
			}
			for _, e := range els {
				if len(e.Key) >= 2 {
					live.Ports = append(live.Ports, uint16(e.Key[0])<<8|uint16(e.Key[1]))
				}
			}
			sort.Slice(live.Ports, func(i, j int) bool { return live.Ports[i] < live.Ports[j] })
		case SetValid:
			if elements {
				els, err := nc.GetSetElements(s)
				if err != nil {
					return nil, fmt.Errorf("read set %s: %w", s.Name, err)
				}
				live.ValidCount = len(els)
			}
		case SetUsed:
			live.UsedExists = true
			live.UsedTimeout = s.Timeout
			live.UsedSize = s.Size
			if elements {
				els, err := nc.GetSetElements(s)
				if err != nil {
					return nil, fmt.Errorf("read set %s: %w", s.Name, err)
				}
				live.UsedCount = len(els)
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
		if ch.Table.Name != t.Name || (ch.Name != ChainInput && ch.Name != ChainKnock) {
			continue
		}
		rs, err := nc.GetRules(t, ch)
		if err != nil {
			return fmt.Errorf("read rules of %s %s: %w", t.Name, ch.Name, err)
		}
		rules[ch.Name] = rs
	}
	for _, r := range rules[ChainKnock] {
		var counter *expr.Counter
		var dynset, drop bool
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Counter:
				counter = e
			case *expr.Dynset:
				dynset = true
			case *expr.Verdict:
				drop = e.Kind == expr.VerdictDrop
			}
		}
		if counter == nil {
			continue
		}
		switch {
		case dynset:
			live.Admitted = Counter{Packets: counter.Packets, Bytes: counter.Bytes}
		case drop:
			live.Dropped = Counter{Packets: counter.Packets, Bytes: counter.Bytes}
		}
	}
	// The rules are current when every rule carries this version's
	// fingerprint for one mark bit, and the counts match.
	fp := ""
	ok := len(rules[ChainInput]) == len(InputRules()) && len(rules[ChainKnock]) == len(KnockRules(1))
	for _, rs := range rules {
		for _, r := range rs {
			v := string(r.UserData)
			if fp == "" {
				fp = v
			}
			if v != fp {
				ok = false
			}
		}
	}
	if ok {
		live.MarkBit, live.RulesCurrent = parseFingerprint([]byte(fp))
	}
	return nil
}

// Result says what Apply changed.
type Result struct {
	Created       bool // the table did not exist
	RulesRebuilt  bool // the chains' rules were (re)written
	UsedRecreated bool // the used set was recreated with new parameters
	Elements      int  // valid elements written
}

// Apply makes the table match s at now, in one netlink transaction: the
// table, sets and chains exist, the rules are the ones KnockRules and
// InputRules build, ports holds s.Ports and valid holds exactly s.Valid.
// The used set keeps its elements; where its timeout or size must change it
// is recreated and its live elements copied over with their remaining time.
// Nothing outside the table is touched. On error nothing has changed.
func (c *Conn) Apply(s State, now time.Time) (Result, error) {
	var res Result
	if err := s.Validate(); err != nil {
		return res, fmt.Errorf("apply: %w", err)
	}
	live, err := c.read(s.Table, false)
	if err != nil {
		return res, fmt.Errorf("apply: %w", err)
	}
	res.Created = !live.Exists
	res.RulesRebuilt = !live.RulesCurrent || live.MarkBit != s.MarkBit
	recreateUsed := live.UsedExists && (live.UsedTimeout != s.UsedTimeout || live.UsedSize != s.usedSize())
	res.UsedRecreated = recreateUsed
	var usedCarry []nftables.SetElement
	if recreateUsed {
		usedCarry, err = c.usedElements(s.Table)
		if err != nil {
			return res, fmt.Errorf("apply: %w", err)
		}
		res.RulesRebuilt = true // rules refer to the set; they go first
	}

	rec := &recorder{}
	nc, err := nftables.New(nftables.WithTestDial(rec.dial))
	if err != nil {
		return res, fmt.Errorf("apply: %w", err)
	}
	t := nc.AddTable(Table(s.Table))
	input, knock := Chains(t)
	nc.AddChain(input)
	nc.AddChain(knock)
	if res.RulesRebuilt {
		nc.FlushChain(input)
		nc.FlushChain(knock)
	}
	ports, valid, used := Sets(t, s)
	if recreateUsed {
		nc.DelSet(used)
	}
	if err := nc.AddSet(ports, nil); err != nil {
		return res, fmt.Errorf("apply: set %s: %w", SetPorts, err)
	}
	nc.FlushSet(ports)
	if err := nc.SetAddElements(ports, PortElements(s.sortedPorts())); err != nil {
		return res, fmt.Errorf("apply: set %s: %w", SetPorts, err)
	}
	if err := nc.AddSet(valid, nil); err != nil {
		return res, fmt.Errorf("apply: set %s: %w", SetValid, err)
	}
	nc.FlushSet(valid)
	err = eachElementChunk(s.Valid, now, elementsPerMessage, func(chunk []nftables.SetElement) error {
		res.Elements += len(chunk)
		return addElements(nc, valid, chunk)
	})
	if err != nil {
		return res, err
	}
	if err := nc.AddSet(used, nil); err != nil {
		return res, fmt.Errorf("apply: set %s: %w", SetUsed, err)
	}
	if err := addElements(nc, used, usedCarry); err != nil {
		return res, err
	}
	if res.RulesRebuilt {
		fp := fingerprint(s.MarkBit)
		for _, r := range InputRules() {
			nc.AddRule(&nftables.Rule{Table: t, Chain: input, Exprs: r, UserData: fp})
		}
		for _, r := range KnockRules(s.MarkBit) {
			nc.AddRule(&nftables.Rule{Table: t, Chain: knock, Exprs: r, UserData: fp})
		}
	}
	if err := nc.Flush(); err != nil {
		return res, fmt.Errorf("apply: build batch: %w", err)
	}
	msgs, err := patchSetUserData(rec.msgs)
	if err != nil {
		return res, fmt.Errorf("apply: %w", err)
	}
	if err := c.send(msgs); err != nil {
		return res, fmt.Errorf("apply %s: %w", s.Table, err)
	}
	return res, nil
}

func addElements(nc *nftables.Conn, s *nftables.Set, els []nftables.SetElement) error {
	for len(els) > 0 {
		n := min(len(els), elementsPerMessage)
		if err := nc.SetAddElements(s, els[:n]); err != nil {
			return fmt.Errorf("apply: set %s: %w", s.Name, err)
		}
		els = els[n:]
	}
	return nil
}

// usedElements returns the used set's elements with their remaining time as
// timeout, to carry them into a recreated set.
func (c *Conn) usedElements(table string) ([]nftables.SetElement, error) {
	nc, err := c.nft()
	if err != nil {
		return nil, err
	}
	s, err := nc.GetSetByName(Table(table), SetUsed)
	if err != nil {
		return nil, fmt.Errorf("read set %s: %w", SetUsed, err)
	}
	els, err := nc.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("read set %s: %w", SetUsed, err)
	}
	out := make([]nftables.SetElement, 0, len(els))
	for _, e := range els {
		left := e.Expires
		if left <= 0 {
			left = e.Timeout
		}
		if left <= 0 {
			continue
		}
		out = append(out, nftables.SetElement{Key: e.Key, Timeout: left})
	}
	return out, nil
}

// Teardown removes table and nothing else, in one transaction. It reports
// whether there was a table to remove.
func (c *Conn) Teardown(table string) (bool, error) {
	nc, err := c.nft()
	if err != nil {
		return false, fmt.Errorf("teardown: %w", err)
	}
	t, err := nc.ListTableOfFamily(table, nftables.TableFamilyINet)
	if err != nil {
		if isNotExist(err) {
			return false, nil
		}
		return false, fmt.Errorf("teardown %s: %w", table, err)
	}
	nc.DelTable(t)
	if err := nc.Flush(); err != nil {
		return false, fmt.Errorf("teardown %s: %w", table, err)
	}
	return true, nil
}

// recorder stands in for the netlink socket while google/nftables flushes:
// it keeps the batch and acknowledges every message.
type recorder struct {
	msgs []netlink.Message
}

func (r *recorder) dial(req []netlink.Message) ([]netlink.Message, error) {
	if req != nil {
		r.msgs = append(r.msgs, req...)
		return nil, nil
	}
	return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}, nil
}

// patchSetUserData gives the NEWSET messages of the concatenated sets the
// typeof user data nft writes. See the package documentation.
func patchSetUserData(msgs []netlink.Message) ([]netlink.Message, error) {
	newset := netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSET)
	out := make([]netlink.Message, len(msgs))
	copy(out, msgs)
	for i, m := range out {
		if m.Header.Type != newset || len(m.Data) < 4 {
			continue
		}
		attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("patch set message: %w", err)
		}
		var name string
		for _, a := range attrs {
			if a.Type == unix.NFTA_SET_NAME {
				name = string(bytes.TrimRight(a.Data, "\x00"))
			}
		}
		if name != SetValid && name != SetUsed {
			continue
		}
		kept := attrs[:0]
		for _, a := range attrs {
			if a.Type != unix.NFTA_SET_USERDATA {
				kept = append(kept, a)
			}
		}
		kept = append(kept, netlink.Attribute{Type: unix.NFTA_SET_USERDATA, Data: dportSeqUserData()})
		b, err := netlink.MarshalAttributes(kept)
		if err != nil {
			return nil, fmt.Errorf("patch set message: %w", err)
		}
		data := append(append([]byte(nil), m.Data[:4]...), b...)
		out[i] = netlink.Message{Header: m.Header, Data: data}
	}
	return out, nil
}

// send writes the batch in one sendmsg and waits for the kernel's answer.
// Only the last message asks for an acknowledgement; the kernel reports an
// error for any message that fails, and then applies none of the batch.
func (c *Conn) send(msgs []netlink.Message) error {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: c.NetNS})
	if err != nil {
		return fmt.Errorf("dial netlink: %w", err)
	}
	defer conn.Close()
	_ = conn.SetOption(netlink.ExtendedAcknowledge, true)
	total := 0
	for i := range msgs {
		msgs[i].Header.Length = 0
		msgs[i].Header.Sequence = 0
		msgs[i].Header.PID = 0
		msgs[i].Header.Flags &^= netlink.Acknowledge
		total += 16 + len(msgs[i].Data) + 3
	}
	// The last message before BATCH_END asks for the acknowledgement.
	last := len(msgs) - 2
	if last < 0 {
		return errors.New("empty batch")
	}
	msgs[last].Header.Flags |= netlink.Acknowledge
	if err := setBuffers(conn, total); err != nil {
		return err
	}
	if _, err := conn.SendMessages(msgs); err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	for {
		replies, err := conn.Receive()
		if err != nil {
			return fmt.Errorf("kernel refused the batch, nothing changed: %w", err)
		}
		for _, r := range replies {
			if r.Header.Type == netlink.Error {
				return nil // errno 0: Receive turns any other errno into err
			}
		}
	}
}

func setBuffers(conn *netlink.Conn, batch int) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		snd := max(batch+64*1024, 256*1024)
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, snd); e != nil {
			// Without CAP_NET_ADMIN the force option is refused; the
			// plain one is capped by net.core.wmem_max.
			if e2 := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, snd); e2 != nil {
				serr = fmt.Errorf("set send buffer: %w", e2)
			}
		}
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20)
	})
	if err != nil {
		return err
	}
	return serr
}

// ReadCounters is Read without counting set elements, which for a large
// valid set costs a full dump.
func (c *Conn) ReadCounters(table string) (*Live, error) {
	return c.read(table, false)
}
