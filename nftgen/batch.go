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
	recreateUsed := usedRecreated(s, live)
	res := Result{Created: !live.Exists && !replace, Replaced: replace, UsedRecreated: recreateUsed,
		// The rules refer to the used set: they go first.
		RulesRebuilt: !live.RulesCurrent || live.Rules != s.Rules || recreateUsed}

	w, nc := recorder()
	if replace {
		nc.DelTable(Table(s.Table))
	}
	t := nc.AddTable(Table(s.Table))
	chains := map[string]*nftables.Chain{}
	for _, c := range chainSpecs {
		chains[c.name] = nc.AddChain(c.chain(t))
	}
	if res.RulesRebuilt {
		for _, c := range chainSpecs {
			nc.FlushChain(chains[c.name])
		}
	}
	if recreateUsed {
		nc.DelSet(&nftables.Set{Table: t, Name: SetUsed})
	}
	var err error
	if res.Elements, err = addSets(nc, w, t, s, live, res.RulesRebuilt, usedCarry, usedSPCarry, now); err != nil {
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

// recorder returns a google/nftables Conn whose Flush hands its messages
// to a new batch writer (nftables.New fails only for a lasting Conn).
func recorder() (*batchWriter, *nftables.Conn) {
	w := newBatchWriter()
	nc, _ := nftables.New(nftables.WithTestDial(w.record))
	return w, nc
}

// buildAddBatch returns the transaction of a rotation: s's valid knocks
// added to the valid set, which is not flushed (the knocks already there
// expire by their own timeouts), and the sessions sets refilled. Nothing
// else is written: the caller has checked that the table is otherwise
// what s describes.
func buildAddBatch(s State, now time.Time) (batch, error) {
	w, nc := recorder()
	n, err := addSets(nc, w, nc.AddTable(Table(s.Table)), s, nil, false, nil, nil, now)
	if err != nil {
		return batch{}, err
	}
	return w.finish(nc, Result{Elements: n})
}

// addSets adds the table's sets for s, in order, with their elements,
// and returns the number of valid elements. A sync (live set) writes every
// set: ports, rstports, the sessions sets, valid and valid_sp (bound, the
// 48-bit knocks validElements set apart) flushed and filled; used and
// used_sp given the carried elements and the spent knocks (recreated
// before, when their timeout or size changes); unknocked given every
// protected port and never flushed, so its per-port counters count on
// across syncs (a port no longer protected keeps its element, which
// nothing looks up); the meters and lockouts keep their sources, except
// when the rules are rebuilt, whose limits may have changed. A rotation
// (live nil, on a table whose sets are current) writes only valid and
// valid_sp, not flushed (the knocks there expire by their own timeouts),
// and the sessions sets. Without source-port rules the sets of 48-bit
// knocks are deleted where live has them, and there must be none.
func addSets(nc *nftables.Conn, w *batchWriter, t *nftables.Table, s State, live *Live, rebuilt bool, usedCarry, usedSPCarry []nftables.SetElement, now time.Time) (int, error) {
	rotation := live == nil
	e4, e6 := SessionElements(s.Sessions)
	count := 0
	for _, x := range tableSets(t, s) {
		set := x.Set
		switch {
		case rotation && set.Name != SetValid && set.Name != SetValidSP && set.Name != SetSessions4 && set.Name != SetSessions6:
			continue
		case sourcePortSet(set.Name) && !s.SourcePort:
			if set.Name == SetValidSP && len(w.bound) > 0 {
				return 0, fmt.Errorf("set %s: %d knocks bound to a source port without source-port rules", SetValidSP, len(w.bound))
			}
			if !rotation && live.SPSets {
				nc.DelSet(set)
			}
			continue
		case set.Name == SetUsedSP && live.SPSets && usedRecreated(s, live):
			nc.DelSet(set)
		}
		if err := nc.AddSet(set, nil); err != nil {
			return 0, fmt.Errorf("set %s: %w", set.Name, err)
		}
		flush := !rotation
		var els []nftables.SetElement
		switch set.Name {
		case SetPorts:
			nc.FlushSet(set)
			if err := nc.SetAddElements(set, PortElements(s.sortedPorts())); err != nil {
				return 0, fmt.Errorf("set %s: %w", set.Name, err)
			}
			continue
		case SetValid:
			if flush {
				nc.FlushSet(set)
			}
			n, err := w.validElements(nc, set, s, now)
			if err != nil {
				return 0, err
			}
			count = n
			continue
		case SetUsed:
			flush, els = false, mergeUsed(usedCarry, s.Spent, false, now)
		case SetSessions4:
			flush, els = true, e4
		case SetSessions6:
			flush, els = true, e6
		case SetReset:
			els = PortElements(sortPorts(s.ResetPorts))
		case SetUnknocked:
			flush, els = false, PortElements(s.sortedPorts())
		case SetValidSP:
			els = w.bound
		case SetUsedSP:
			flush, els = false, mergeUsed(usedSPCarry, s.Spent, true, now)
		default:
			flush = rebuilt
		}
		if flush {
			nc.FlushSet(set)
		}
		if err := addElements(nc, set, els); err != nil {
			return 0, err
		}
	}
	return count, nil
}

// putSessions adds the sessions sets with ss, flushed first when flush is
// set.
func putSessions(nc *nftables.Conn, t *nftables.Table, ss []Session, flush bool) error {
	e4, e6 := SessionElements(ss)
	byName := map[string][]nftables.SetElement{SetSessions4: e4, SetSessions6: e6}
	for _, x := range tableSets(t, State{}) {
		els, ok := byName[x.Name]
		if !ok {
			continue
		}
		if err := nc.AddSet(x.Set, nil); err != nil {
			return fmt.Errorf("set %s: %w", x.Name, err)
		}
		if flush {
			nc.FlushSet(x.Set)
		}
		if err := addElements(nc, x.Set, els); err != nil {
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
