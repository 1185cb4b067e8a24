package nftgen

import "time"

// Counter is a packet and byte count of a rule.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

func (c *Counter) add(o Counter) { c.Packets += o.Packets; c.Bytes += o.Bytes }

// Live is what a table holds now, as Conn.Read finds it.
type Live struct {
	Exists bool
	Ports  []uint16
	// ValidCount and UsedCount are the numbers of elements in the sets;
	// ReadCounters leaves ValidCount 0 (the valid set is large).
	ValidCount int
	UsedCount  int
	// ValidKeys and UsedKeys are the sets' elements (Read only).
	ValidKeys []Key
	UsedKeys  []Key
	// Admitted counts SYNs admitted by a knock; Dropped the unknocked
	// packets dropped (in the knock and syn chains), Rejected those
	// answered with a reset (ports in reset mode), Lockout the unknocked
	// SYNs of locked-out sources, dropped or reset by the lockout rules.
	Admitted Counter
	Dropped  Counter
	Rejected Counter
	Lockout  Counter
	// Unknocked counts, per port, the packets that reached the end of the
	// knock or syn chain: neither a knock, nor a connection, nor a
	// locked-out source's.
	Unknocked map[uint16]Counter
	// ResetPorts are the ports in reset mode.
	ResetPorts []uint16
	// LockedOut is the number of sources locked out now.
	LockedOut int
	// RulesCurrent says whether both chains hold exactly the rules this
	// version of the package builds for Rules.
	RulesCurrent bool
	Rules
	// UsedTimeout and UsedSize describe the used set, when it exists.
	UsedExists  bool
	UsedTimeout time.Duration
	UsedSize    uint32
	// SPSets says whether the valid_sp and used_sp sets exist.
	SPSets bool
}

// Result says what Apply changed.
type Result struct {
	Created       bool // the table did not exist
	RulesRebuilt  bool // the chains' rules were (re)written
	UsedRecreated bool // the used set was recreated with new parameters
	Elements      int  // valid elements written
	Bytes         int  // netlink bytes sent (the whole batch)
}

// Key is the key of a valid or used element: a SYN to Port with sequence
// number ISN, from source port SPort when not 0 (valid_sp, used_sp).
type Key struct {
	SPort uint16
	Port  uint16
	ISN   uint32
}

// keyOf decodes a "tcp dport . tcp sequence" element key (the port in the
// first 4-byte slot, big endian, then the sequence number) or a "tcp
// sport . tcp dport . tcp sequence" one (12 bytes, the source port
// first).
func keyOf(b []byte) (Key, bool) {
	var k Key
	if len(b) == 12 {
		k.SPort = uint16(b[0])<<8 | uint16(b[1])
		b = b[4:]
	}
	if len(b) != 8 {
		return Key{}, false
	}
	k.Port = uint16(b[0])<<8 | uint16(b[1])
	k.ISN = uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7])
	return k, true
}
