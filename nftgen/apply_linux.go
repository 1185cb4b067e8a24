//go:build linux

package nftgen

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
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
	if live.Foreign != "" {
		res, err := c.replace(s, now, live)
		if err == nil {
			c.remember(gen, genErr, s)
		}
		return res, err
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
	b, err := buildBatch(s, now, live, usedCarry, usedSPCarry, false)
	if err != nil {
		return Result{}, fmt.Errorf("apply: %w", err)
	}
	defer b.release()
	if err := c.send(b); err != nil {
		c.forget()
		if !live.Exists || !refusedInPlace(err) {
			return b.res, fmt.Errorf("apply %s: %w", s.Table, err)
		}
		// A shape the read did not flag, which the kernel will not
		// change in place: replace the table.
		live.Foreign = "the kernel refused to change it in place: " + err.Error()
		res, rerr := c.replace(s, now, live)
		if rerr != nil {
			return res, fmt.Errorf("apply %s: %w (replacing it whole: %w)", s.Table, err, rerr)
		}
		c.remember(gen, genErr, s)
		return res, nil
	}
	c.remember(gen, genErr, s)
	b.res.Bytes = b.size()
	return b.res, nil
}

// refusedInPlace says whether err is the kernel refusing to change an
// object of the table into the shape asked for (a base chain's hook or
// priority, a set's key or flags), which a replacement can do.
func refusedInPlace(err error) bool {
	return slices.ContainsFunc([]error{unix.EOPNOTSUPP, unix.EEXIST, unix.EINVAL, unix.ENOENT, unix.EBUSY}, func(e error) bool { return errors.Is(err, e) })
}

// replace deletes the table live describes and creates s in its place, in
// one transaction, carrying over the spent knocks of its used and used_sp
// sets where those have our keys: a knock spent stays spent. On error
// nothing has changed.
func (c *Conn) replace(s State, now time.Time, live *Live) (Result, error) {
	var carry, carrySP []nftables.SetElement
	if live.UsedExists {
		els, err := c.usedElements(s.Table, SetUsed)
		if err != nil {
			return Result{}, fmt.Errorf("replace %s: %w", s.Table, err)
		}
		carry = keysOfLen(els, len(elementKey(0, 0, 0)))
	}
	if live.SPSets && s.SourcePort {
		els, err := c.usedElements(s.Table, SetUsedSP)
		if err != nil && !isNotExist(err) {
			return Result{}, fmt.Errorf("replace %s: %w", s.Table, err)
		}
		carrySP = keysOfLen(els, len(elementKey(1, 0, 0)))
	}
	b, err := buildBatch(s, now, &Live{}, carry, carrySP, true)
	if err != nil {
		return Result{}, fmt.Errorf("replace %s: %w", s.Table, err)
	}
	defer b.release()
	if err := c.send(b); err != nil {
		c.forget()
		return b.res, fmt.Errorf("replace %s (%s): %w", s.Table, live.Foreign, err)
	}
	b.res.Bytes = b.size()
	return b.res, nil
}

// keysOfLen returns the elements of els whose key is n bytes long: a
// foreign used set may hold keys of another type, which ours cannot.
func keysOfLen(els []nftables.SetElement, n int) []nftables.SetElement {
	return slices.DeleteFunc(els, func(e nftables.SetElement) bool { return len(e.Key) != n })
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
		if have, ok := liveShape(s.Table, live); !ok || have != shapeOf(s) {
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
