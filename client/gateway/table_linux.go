//go:build linux

package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/seqknock/seqknock/internal/nlwatch"
	"golang.org/x/sys/unix"
)

// Install writes the ruleset in one transaction, replacing whatever table
// of that name there was.
func Install(rs *Ruleset) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("install table: %w", err)
	}
	// Add, delete, add: the table is replaced whether or not it existed,
	// in the same transaction as its new contents.
	c.AddTable(rs.Table)
	c.DelTable(rs.Table)
	c.AddTable(rs.Table)
	for _, ch := range rs.Chains {
		c.AddChain(ch)
	}
	for _, r := range rs.Rules {
		c.AddRule(r)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install table inet %s: %w", rs.Table.Name, err)
	}
	return nil
}

// Remove deletes the table; one that is not there is no error.
func Remove(rs *Ruleset) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("remove table: %w", err)
	}
	c.DelTable(rs.Table)
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove table inet %s: %w", rs.Table.Name, err)
	}
	return nil
}

// Intact reports whether the live table holds exactly the ruleset's
// chains and rules (told by the rules' comments).
func Intact(rs *Ruleset) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	if _, err := c.ListTableOfFamily(rs.Table.Name, rs.Table.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, err
	}
	chains, err := c.ListChainsOfTableFamily(rs.Table.Family)
	if err != nil {
		return false, err
	}
	chains = slices.DeleteFunc(chains, func(ch *nftables.Chain) bool { return ch.Table.Name != rs.Table.Name })
	if len(chains) != len(rs.Chains) {
		return false, nil
	}
	i := 0
	for _, ch := range rs.Chains {
		live, err := c.GetRules(rs.Table, ch)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return false, nil
			}
			return false, err
		}
		for _, r := range live {
			if i >= len(rs.Rules) || rs.Rules[i].Chain.Name != ch.Name || !bytes.Equal(r.UserData, rs.Rules[i].UserData) {
				return false, nil
			}
			i++
		}
	}
	return i == len(rs.Rules), nil
}

// Keep keeps the ruleset in force until ctx ends: whenever an nftables
// transaction commits (NFNLGRP_NFTABLES), and every poll as a backstop,
// it checks the table and writes it again if it is missing or changed.
// repaired is told of each rewrite, failed of each failure.
func Keep(ctx context.Context, rs *Ruleset, poll time.Duration, repaired func(), failed func(error)) {
	for ctx.Err() == nil {
		changes, err := watch(ctx) // nil on error: poll alone until the next try
		if err != nil {
			failed(err)
		}
		tick := time.NewTicker(poll)
		for open := true; open && ctx.Err() == nil; {
			select {
			case <-ctx.Done():
			case _, ok := <-changes:
				open = ok && changes != nil
			case <-tick.C:
				if changes == nil {
					open = false
				}
			}
			if ctx.Err() != nil {
				break
			}
			ok, err := Intact(rs)
			if err == nil && !ok {
				if err = Install(rs); err == nil {
					repaired()
				}
			}
			if err != nil {
				failed(err)
			}
		}
		tick.Stop()
	}
}

// watch signals every committed nftables transaction (its NEWGEN message),
// and a lost notification too.
func watch(ctx context.Context) (<-chan struct{}, error) {
	conn, err := nlwatch.Join(0, unix.NFNLGRP_NFTABLES)
	if err != nil {
		return nil, fmt.Errorf("watch nftables: %w", err)
	}
	return nlwatch.Run(ctx, conn, func(notify func()) {
		for {
			msgs, err := conn.Receive()
			if err != nil {
				if ctx.Err() == nil && errors.Is(err, unix.ENOBUFS) {
					notify()
					continue
				}
				return
			}
			for _, m := range msgs {
				if m.Header.Type>>8 == unix.NFNL_SUBSYS_NFTABLES && uint16(m.Header.Type&0xff) == unix.NFT_MSG_NEWGEN {
					notify()
				}
			}
		}
	}), nil
}
