//go:build linux

package nftgen

import (
	"fmt"
	"time"
)

// madeState is what an Apply or AddValid of c left in the table: the
// ruleset's generation id after its commit, and the shape of its state.
// While the generation id has not moved, nothing has committed in the
// namespace since (the kernel counts every transaction of every table),
// so the table still has that shape: expiring elements and the packet
// path's used entries are no transactions, and AddValid does not look at
// them. A rotation of a state of the same shape then need not read the
// table to know it is current.
type madeState struct {
	gen   uint32
	shape shape
}

// shape is what AddValid requires of the live table apart from its
// elements, and what Apply of a state makes of it: the table with these
// rules, ports and reset ports, a used set of this timeout and size, and
// the source-port sets or not. shapeOf gives a state's, liveShape a table
// read from the kernel's; AddValid compares the two with ==, and the shape
// c remembers (madeState) stands in for the read while nothing has
// committed. Every field is comparable, so == sees a field added here.
type shape struct {
	table       string
	rules       Rules
	usedTimeout time.Duration
	usedSize    uint32
	ports       string // sorted, as fmt prints a []uint16
	resetPorts  string
	spSets      bool
}

func shapeOf(s State) shape {
	return shape{table: s.Table, rules: s.Rules, usedTimeout: s.UsedTimeout, usedSize: s.usedSize(),
		ports: fmt.Sprint(s.sortedPorts()), resetPorts: fmt.Sprint(sortPorts(s.ResetPorts)), spSets: s.SourcePort}
}

// liveShape is the shape of table as live describes it, and whether it is
// whole: the table exists, with rules this version of the package builds
// and a used set. Read gives the ports and reset ports sorted.
func liveShape(table string, live *Live) (shape, bool) {
	if !live.Exists || !live.RulesCurrent || !live.UsedExists {
		return shape{}, false
	}
	return shape{table: table, rules: live.Rules, usedTimeout: live.UsedTimeout, usedSize: live.UsedSize,
		ports: fmt.Sprint(live.Ports), resetPorts: fmt.Sprint(live.ResetPorts), spSets: live.SPSets}, true
}

// gen reads the namespace's generation id on the batch socket.
func (c *Conn) gen() (uint32, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.genLocked()
}

// unchanged says whether the table is as c's last Apply or AddValid left
// it, of s's shape: gen, read just now, is the one after that commit.
func (c *Conn) unchanged(gen uint32, s State) bool {
	c.madeMu.Lock()
	defer c.madeMu.Unlock()
	return c.made != nil && c.made.gen == gen && c.made.shape == shapeOf(s)
}

// remember records that the transaction just committed made the table
// into s's shape, if it was the only commit since before, the generation
// id read before the table was (err: that read failed): the next
// generation id must follow before directly. Otherwise, or when the id
// cannot be read, nothing is known.
func (c *Conn) remember(before uint32, err error, s State) {
	after, err2 := c.gen()
	c.madeMu.Lock()
	defer c.madeMu.Unlock()
	c.made = nil
	if err == nil && err2 == nil && after == nextGen(before) {
		c.made = &madeState{gen: after, shape: shapeOf(s)}
	}
}

// forget drops what remember knew: a transaction failed, or its outcome
// is unknown.
func (c *Conn) forget() {
	c.madeMu.Lock()
	defer c.madeMu.Unlock()
	c.made = nil
}
