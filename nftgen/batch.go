package nftgen

import (
	"fmt"
	"time"

	"github.com/google/nftables"
)

// elementsPerMessage bounds the elements in one NEWSETELEM message: an
// attribute's length is 16 bits, and an element takes 32 bytes.
const elementsPerMessage = 1024

// batch is what Apply sends: the messages of one transaction, encoded as
// sendmsg takes them, and what they change.
type batch struct {
	segs [][]byte
	res  Result
}

// buildBatch returns the transaction that makes a table in state live into
// s at now. usedCarry holds the used set's elements to carry over when the
// set is recreated. It talks to no kernel: google/nftables builds the
// messages into a recorder (see the package documentation), the typeof
// user data is patched in, and the valid set's elements are encoded
// straight into the batch as they are derived.
//
// usedSPCarry is the same for used_sp. With replace set, the batch first
// deletes the table, whatever it holds, and live must describe no table:
// the table is created afresh in the same transaction.
func buildBatch(s State, now time.Time, live *Live, usedCarry, usedSPCarry []nftables.SetElement, replace bool) (batch, error) {
	var res Result
	res.Created = !live.Exists && !replace
	res.Replaced = replace
	res.RulesRebuilt = !live.RulesCurrent || live.Rules != s.Rules
	recreateUsed := usedRecreated(s, live)
	res.UsedRecreated = recreateUsed
	if recreateUsed {
		res.RulesRebuilt = true // rules refer to the set; they go first
	}

	w := newBatchWriter()
	nc, err := nftables.New(nftables.WithTestDial(w.record))
	if err != nil {
		return batch{}, err
	}
	if replace {
		nc.DelTable(Table(s.Table))
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
	if res.Elements, err = w.validElements(nc, valid, s, now); err != nil {
		return batch{}, err
	}
	if err := nc.AddSet(used, nil); err != nil {
		return batch{}, fmt.Errorf("set %s: %w", SetUsed, err)
	}
	if err := addElements(nc, used, mergeUsed(usedCarry, s.Spent, false, now)); err != nil {
		return batch{}, err
	}
	if err := addSessions(nc, t, s.Sessions); err != nil {
		return batch{}, err
	}
	if err := addModeSets(nc, t, s, res.RulesRebuilt); err != nil {
		return batch{}, err
	}
	if err := addSPSets(nc, t, s, live, w.bound, usedSPCarry, now, true); err != nil {
		return batch{}, err
	}
	if res.RulesRebuilt {
		fp := s.Rules.fingerprint()
		for _, r := range s.Rules.ruleList() {
			nc.AddRule(&nftables.Rule{Table: t, Chain: chains[r.chain], Exprs: r.exprs, UserData: fp})
		}
	}
	return w.finish(nc, res)
}

// buildAddBatch returns the transaction of a rotation: s's valid knocks
// added to the valid set, which is not flushed (the knocks already there
// expire by their own timeouts), and the sessions sets refilled. Nothing
// else is written: the caller has checked that the table is otherwise
// what s describes.
func buildAddBatch(s State, now time.Time) (batch, error) {
	w := newBatchWriter()
	nc, err := nftables.New(nftables.WithTestDial(w.record))
	if err != nil {
		return batch{}, err
	}
	t := nc.AddTable(Table(s.Table))
	_, valid, _ := Sets(t, s)
	if err := nc.AddSet(valid, nil); err != nil {
		return batch{}, fmt.Errorf("set %s: %w", SetValid, err)
	}
	var res Result
	if res.Elements, err = w.validElements(nc, valid, s, now); err != nil {
		return batch{}, err
	}
	if err := addSessions(nc, t, s.Sessions); err != nil {
		return batch{}, err
	}
	if err := addSPSets(nc, t, s, nil, w.bound, nil, now, false); err != nil {
		return batch{}, err
	}
	return w.finish(nc, res)
}

// addSPSets adds the sets of the 48-bit knocks when s.Rules.SourcePort is
// on: valid_sp with bound (flushed first when whole is set, as valid is),
// used_sp with the carried elements and the spent 48-bit knocks
// (recreated when used is). When it is off, it deletes the sets live has,
// and bound must be empty. live is nil for a rotation, which the caller
// made only on a table whose sets are current.
func addSPSets(nc *nftables.Conn, t *nftables.Table, s State, live *Live, bound, usedCarry []nftables.SetElement, now time.Time, whole bool) error {
	valid, used := SPSets(t, s)
	if !s.Rules.SourcePort {
		if len(bound) > 0 {
			return fmt.Errorf("set %s: %d knocks bound to a source port without source-port rules", SetValidSP, len(bound))
		}
		if live != nil && live.SPSets {
			nc.DelSet(valid)
			nc.DelSet(used)
		}
		return nil
	}
	if err := nc.AddSet(valid, nil); err != nil {
		return fmt.Errorf("set %s: %w", SetValidSP, err)
	}
	if whole {
		nc.FlushSet(valid)
	}
	if err := addElements(nc, valid, bound); err != nil {
		return err
	}
	if !whole {
		return nil
	}
	if live != nil && live.SPSets && usedRecreated(s, live) {
		nc.DelSet(used)
	}
	if err := nc.AddSet(used, nil); err != nil {
		return fmt.Errorf("set %s: %w", SetUsedSP, err)
	}
	return addElements(nc, used, mergeUsed(usedCarry, s.Spent, true, now))
}

// addSessions adds the sessions sets, flushed and filled with ss.
func addSessions(nc *nftables.Conn, t *nftables.Table, ss []Session) error {
	return putSessions(nc, t, ss, true)
}

// putSessions adds the sessions sets with ss, flushed first when flush is
// set.
func putSessions(nc *nftables.Conn, t *nftables.Table, ss []Session, flush bool) error {
	s4, s6 := SessionSets(t)
	e4, e6 := SessionElements(ss)
	for _, x := range []struct {
		set *nftables.Set
		els []nftables.SetElement
	}{{s4, e4}, {s6, e6}} {
		if err := nc.AddSet(x.set, nil); err != nil {
			return fmt.Errorf("set %s: %w", x.set.Name, err)
		}
		if flush {
			nc.FlushSet(x.set)
		}
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

// mergeUsed returns the used set's elements to add (used_sp's when bound):
// those carried over from the live set and the spent knocks of that set,
// each with its remaining time at now (the longer where both hold a
// knock); spent knocks already expired are left out.
func mergeUsed(carry []nftables.SetElement, spent []Element, bound bool, now time.Time) []nftables.SetElement {
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
		if ttl <= 0 || (e.SPort != 0) != bound {
			continue
		}
		key := elementKey(e.SPort, e.Port, e.ISN)
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
