package nftgen

import (
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
)

// elementsPerMessage bounds the elements in one NEWSETELEM message: an
// attribute's length is 16 bits, and an element takes about 40 bytes.
const elementsPerMessage = 1024

// batch is what Apply sends: the messages of one transaction, and what they
// change.
type batch struct {
	msgs []netlink.Message
	res  Result
}

// buildBatch returns the transaction that makes a table in state live into
// s at now. usedCarry holds the used set's elements to carry over when the
// set is recreated. It talks to no kernel: google/nftables builds the
// messages into a recorder (see the package documentation), and the typeof
// user data is patched in.
func buildBatch(s State, now time.Time, live *Live, usedCarry []nftables.SetElement) (batch, error) {
	var res Result
	res.Created = !live.Exists
	res.RulesRebuilt = !live.RulesCurrent || live.Rules != s.Rules
	recreateUsed := usedRecreated(s, live)
	res.UsedRecreated = recreateUsed
	if recreateUsed {
		res.RulesRebuilt = true // rules refer to the set; they go first
	}

	rec := &recorder{}
	nc, err := nftables.New(nftables.WithTestDial(rec.dial))
	if err != nil {
		return batch{}, err
	}
	t := nc.AddTable(Table(s.Table))
	input, knock := Chains(t)
	pre, syn, lockout := PreChains(t)
	chains := map[string]*nftables.Chain{ChainInput: input, ChainKnock: knock, ChainPre: pre, ChainSyn: syn, ChainLockout: lockout}
	for _, name := range chainOrder {
		nc.AddChain(chains[name])
	}
	if res.RulesRebuilt {
		for _, name := range chainOrder {
			nc.FlushChain(chains[name])
		}
	}
	ports, valid, used := Sets(t, s)
	if recreateUsed {
		nc.DelSet(used)
	}
	if err := nc.AddSet(ports, nil); err != nil {
		return batch{}, fmt.Errorf("set %s: %w", SetPorts, err)
	}
	nc.FlushSet(ports)
	if err := nc.SetAddElements(ports, PortElements(s.sortedPorts())); err != nil {
		return batch{}, fmt.Errorf("set %s: %w", SetPorts, err)
	}
	if err := nc.AddSet(valid, nil); err != nil {
		return batch{}, fmt.Errorf("set %s: %w", SetValid, err)
	}
	nc.FlushSet(valid)
	err = eachElementChunk(withoutSpent(s.Valid, s.Spent), now, elementsPerMessage, func(chunk []nftables.SetElement) error {
		res.Elements += len(chunk)
		return addElements(nc, valid, chunk)
	})
	if err != nil {
		return batch{}, err
	}
	if err := nc.AddSet(used, nil); err != nil {
		return batch{}, fmt.Errorf("set %s: %w", SetUsed, err)
	}
	if err := addElements(nc, used, mergeUsed(usedCarry, s.Spent, now)); err != nil {
		return batch{}, err
	}
	if err := addSessions(nc, t, s.Sessions); err != nil {
		return batch{}, err
	}
	if err := addModeSets(nc, t, s, res.RulesRebuilt); err != nil {
		return batch{}, err
	}
	if res.RulesRebuilt {
		fp := s.Rules.fingerprint()
		for _, r := range s.Rules.ruleList() {
			nc.AddRule(&nftables.Rule{Table: t, Chain: chains[r.chain], Exprs: r.exprs, UserData: fp})
		}
	}
	if err := nc.Flush(); err != nil {
		return batch{}, fmt.Errorf("build batch: %w", err)
	}
	msgs, err := patchSetUserData(rec.msgs)
	if err != nil {
		return batch{}, err
	}
	return batch{msgs: msgs, res: res}, nil
}

// addSessions adds the sessions sets, flushed and filled with ss.
func addSessions(nc *nftables.Conn, t *nftables.Table, ss []Session) error {
	s4, s6 := SessionSets(t)
	e4, e6 := SessionElements(ss)
	for _, x := range []struct {
		set *nftables.Set
		els []nftables.SetElement
	}{{s4, e4}, {s6, e6}} {
		if err := nc.AddSet(x.set, nil); err != nil {
			return fmt.Errorf("set %s: %w", x.set.Name, err)
		}
		nc.FlushSet(x.set)
		if err := addElements(nc, x.set, x.els); err != nil {
			return err
		}
	}
	return nil
}

// addModeSets adds the sets of the closed-port mode and the limits:
// rstports flushed and filled; unknocked given every protected port and
// never flushed, so its per-port counters count on across syncs (a port
// no longer protected keeps its element, which nothing looks up); the
// meters and lockouts keep their sources, except when the rules are
// rebuilt, whose limits may have changed.
func addModeSets(nc *nftables.Conn, t *nftables.Table, s State, rebuilt bool) error {
	for _, set := range ModeSets(t) {
		if err := nc.AddSet(set, nil); err != nil {
			return fmt.Errorf("set %s: %w", set.Name, err)
		}
		var els []nftables.SetElement
		switch set.Name {
		case SetReset:
			nc.FlushSet(set)
			els = PortElements(sortPorts(s.ResetPorts))
		case SetUnknocked:
			els = PortElements(s.sortedPorts())
		default:
			if rebuilt {
				nc.FlushSet(set)
			}
		}
		if err := addElements(nc, set, els); err != nil {
			return err
		}
	}
	return nil
}

// withoutSpent returns valid without the knocks in spent.
func withoutSpent(valid, spent []Element) []Element {
	if len(spent) == 0 {
		return valid
	}
	skip := make(map[uint64]bool, len(spent))
	for _, e := range spent {
		skip[uint64(e.Port)<<32|uint64(e.ISN)] = true
	}
	out := make([]Element, 0, len(valid))
	for _, e := range valid {
		if !skip[uint64(e.Port)<<32|uint64(e.ISN)] {
			out = append(out, e)
		}
	}
	return out
}

// mergeUsed returns the used set's elements to add: those carried over
// from the live set and the spent knocks, each with its remaining time at
// now (the longer where both hold a knock); spent knocks already expired
// are left out.
func mergeUsed(carry []nftables.SetElement, spent []Element, now time.Time) []nftables.SetElement {
	if len(spent) == 0 {
		return carry
	}
	idx := make(map[string]int, len(carry)+len(spent))
	out := make([]nftables.SetElement, 0, len(carry)+len(spent))
	for _, e := range carry {
		idx[string(e.Key)] = len(out)
		out = append(out, e)
	}
	for _, e := range spent {
		ttl := e.Expires.Sub(now).Truncate(time.Millisecond)
		if ttl <= 0 {
			continue
		}
		key := dportSeqKey(e.Port, e.ISN)
		if i, ok := idx[string(key)]; ok {
			out[i].Timeout = max(out[i].Timeout, ttl)
			continue
		}
		idx[string(key)] = len(out)
		out = append(out, nftables.SetElement{Key: key, Timeout: ttl})
	}
	return out
}

// usedRecreated says whether the used set must be recreated to get s's
// timeout and size.
func usedRecreated(s State, live *Live) bool {
	return live.UsedExists && (live.UsedTimeout != s.UsedTimeout || live.UsedSize != s.usedSize())
}

func addElements(nc *nftables.Conn, s *nftables.Set, els []nftables.SetElement) error {
	for len(els) > 0 {
		n := min(len(els), elementsPerMessage)
		if err := nc.SetAddElements(s, els[:n]); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		els = els[n:]
	}
	return nil
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
