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
	w := newBatchWriter()
	nc, err := nftables.New(nftables.WithTestDial(w.record))
	if err != nil {
		return fmt.Errorf("apply sessions: %w", err)
	}
	if err := addSessions(nc, Table(table), ss); err != nil {
		return fmt.Errorf("apply sessions: %w", err)
	}
	b, err := w.finish(nc, Result{})
	if err != nil {
		return fmt.Errorf("apply sessions: %w", err)
	}
	if err := c.send(b); err != nil {
		return fmt.Errorf("apply sessions %s: %w", table, err)
	}
	return nil
}
