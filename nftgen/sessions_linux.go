//go:build linux

package nftgen

import (
	"fmt"

	"github.com/google/nftables"
)

// ApplySessions refills the sessions sets of table with ss, in one
// transaction, and touches nothing else. The table must exist (Apply makes
// it); on error nothing has changed.
func (c *Conn) ApplySessions(table string, ss []Session) error {
	rec := &recorder{}
	nc, err := nftables.New(nftables.WithTestDial(rec.dial))
	if err != nil {
		return fmt.Errorf("apply sessions: %w", err)
	}
	if err := addSessions(nc, Table(table), ss); err != nil {
		return fmt.Errorf("apply sessions: %w", err)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("apply sessions: build batch: %w", err)
	}
	if err := c.send(rec.msgs); err != nil {
		return fmt.Errorf("apply sessions %s: %w", table, err)
	}
	return nil
}
