package nftgen

import "time"

// Counter is a packet and byte count of a rule.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Live is what a table holds now, as Conn.Read finds it.
type Live struct {
	Exists bool
	Ports  []uint16
	// ValidCount and UsedCount are the numbers of elements in the sets.
	ValidCount int
	UsedCount  int
	// Admitted counts SYNs admitted by a knock; Dropped everything the
	// knock chain dropped.
	Admitted Counter
	Dropped  Counter
	// RulesCurrent says whether both chains hold exactly the rules this
	// version of the package builds for Rules.
	RulesCurrent bool
	Rules
	// UsedTimeout and UsedSize describe the used set, when it exists.
	UsedExists  bool
	UsedTimeout time.Duration
	UsedSize    uint32
}

// Result says what Apply changed.
type Result struct {
	Created       bool // the table did not exist
	RulesRebuilt  bool // the chains' rules were (re)written
	UsedRecreated bool // the used set was recreated with new parameters
	Elements      int  // valid elements written
}
