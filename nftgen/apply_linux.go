//go:build linux

package nftgen

import (
	"fmt"
	"time"

	"github.com/google/nftables"
)

// Apply makes the table match s at now, in one netlink transaction: the
// table, sets and chains exist, the rules are the ones KnockRules and
// InputRules build, ports holds s.Ports and valid holds exactly s.Valid.
// The used set keeps its elements; where its timeout or size must change it
// is recreated and its live elements copied over with their remaining time.
// Nothing outside the table is touched. On error nothing has changed.
func (c *Conn) Apply(s State, now time.Time) (Result, error) {
	if err := s.Validate(); err != nil {
		return Result{}, fmt.Errorf("apply: %w", err)
	}
	live, err := c.read(s.Table, false)
	if err != nil {
		return Result{}, fmt.Errorf("apply: %w", err)
	}
	var usedCarry []nftables.SetElement
	if usedRecreated(s, live) {
		usedCarry, err = c.usedElements(s.Table)
		if err != nil {
			return Result{}, fmt.Errorf("apply: %w", err)
		}
	}
	b, err := buildBatch(s, now, live, usedCarry)
	if err != nil {
		return Result{}, fmt.Errorf("apply: %w", err)
	}
	if err := c.send(b.msgs); err != nil {
		return b.res, fmt.Errorf("apply %s: %w", s.Table, err)
	}
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
