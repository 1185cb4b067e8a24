//go:build linux

package nftgen

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
)

// Apply makes the table match s at now, in one netlink transaction: the
// table, sets and chains exist, the rules are the ones ruleList
// builds, ports holds s.Ports and valid holds exactly s.Valid.
// The used set keeps its elements; where its timeout or size must change it
// is recreated and its live elements copied over with their remaining time.
// Nothing outside the table is touched. On error nothing has changed.
func (c *Conn) Apply(s State, now time.Time) (Result, error) {
	if err := s.Validate(); err != nil {
		return Result{}, fmt.Errorf("apply: %w", err)
	}
	gen, genErr := c.gen()
	live, err := c.read(s.Table, false)
	if err != nil {
		return Result{}, fmt.Errorf("apply: %w", err)
	}
	var usedCarry, usedSPCarry []nftables.SetElement
	if usedRecreated(s, live) {
		usedCarry, err = c.usedElements(s.Table, SetUsed)
		if err != nil {
			return Result{}, fmt.Errorf("apply: %w", err)
		}
		if live.SPSets && s.SourcePort {
			if usedSPCarry, err = c.usedElements(s.Table, SetUsedSP); err != nil {
				return Result{}, fmt.Errorf("apply: %w", err)
			}
		}
	}
	b, err := buildBatch(s, now, live, usedCarry, usedSPCarry)
	if err != nil {
		return Result{}, fmt.Errorf("apply: %w", err)
	}
	defer b.release()
	if err := c.send(b); err != nil {
		c.forget()
		return b.res, fmt.Errorf("apply %s: %w", s.Table, err)
	}
	c.remember(gen, genErr, s)
	b.res.Bytes = b.size()
	return b.res, nil
}

// ErrStale is AddValid's answer when the live table is not the one s
// describes, apart from its valid elements: absent, its rules, ports or
// used set differ. The caller applies s whole instead.
var ErrStale = errors.New("table not current: apply it whole")

// AddValid is a rotation: it adds s's valid knocks (Valid and Knocks) to
// the valid set without flushing it, so the knocks already there stay until
// their own timeouts end, and refills the sessions sets, in one
// transaction. It first reads the table (without the valid set's
// elements); if the table, its rules, ports or used set are not what s
// describes, it writes nothing and returns ErrStale. The read is left out
// when nothing has committed in the namespace since c's own last Apply or
// AddValid of a state of the same shape (made_linux.go). It cannot see whether
// someone else removed valid elements: the caller watches for that (Watch)
// and applies whole after any foreign change. On error nothing has changed.
func (c *Conn) AddValid(s State, now time.Time) (Result, error) {
	if err := s.Validate(); err != nil {
		return Result{}, fmt.Errorf("add valid: %w", err)
	}
	gen, genErr := c.gen()
	if genErr != nil || !c.unchanged(gen, s) {
		live, err := c.read(s.Table, false)
		if err != nil {
			return Result{}, fmt.Errorf("add valid: %w", err)
		}
		if have, ok := liveShape(s.Table, live); !ok || !have.equal(shapeOf(s)) {
			return Result{}, fmt.Errorf("add valid: %w", ErrStale)
		}
	}
	b, err := buildAddBatch(s, now)
	if err != nil {
		return Result{}, fmt.Errorf("add valid: %w", err)
	}
	defer b.release()
	if err := c.send(b); err != nil {
		c.forget()
		return b.res, fmt.Errorf("add valid %s: %w", s.Table, err)
	}
	c.remember(gen, genErr, s)
	b.res.Bytes = b.size()
	return b.res, nil
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
