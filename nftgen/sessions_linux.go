//go:build linux

package nftgen

import "fmt"

// ApplySessions refills the sessions sets of table with ss, in one
// transaction, and touches nothing else. The table must exist (Apply makes
// it); on error nothing has changed.
func (c *Conn) ApplySessions(table string, ss []Session) error {
	return c.putSessions(table, ss, true)
}

// AddSessions adds ss to the sessions sets of table, flushing nothing: a
// connection the daemon learned of before the next refill (an admission,
// from the admit rule's nflog), so that a mid-stream pickup of it passes
// from then on. The next refill drops it once it is closed.
func (c *Conn) AddSessions(table string, ss []Session) error {
	return c.putSessions(table, ss, false)
}

func (c *Conn) putSessions(table string, ss []Session, flush bool) error {
	w, nc := recorder()
	if err := putSessions(nc, Table(table), ss, flush); err != nil {
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
