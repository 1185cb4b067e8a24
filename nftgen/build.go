package nftgen

import (
	"encoding/binary"
	"time"

	"github.com/google/nftables"
)

// Table returns the inet table.
func Table(name string) *nftables.Table {
	return &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
}

// SessionElements returns the elements of the sessions sets for ss.
func SessionElements(ss []Session) (v4, v6 []nftables.SetElement) {
	port := func(b []byte, p uint16) []byte { return append(binary.BigEndian.AppendUint16(b, p), 0, 0) }
	for _, s := range ss {
		src, dst := s.Src.Addr().Unmap(), s.Dst.Addr().Unmap()
		if src.Is4() != dst.Is4() {
			continue
		}
		k := port(src.AsSlice(), s.Src.Port())
		k = port(append(k, dst.AsSlice()...), s.Dst.Port())
		if src.Is4() {
			v4 = append(v4, nftables.SetElement{Key: k})
		} else {
			v6 = append(v6, nftables.SetElement{Key: k})
		}
	}
	return v4, v6
}

// PortKey is the ports set key for port.
func portKey(port uint16) []byte { return binary.BigEndian.AppendUint16(nil, port) }

// eachUnique calls fn, in order, with the valid and valid_sp sets'
// elements at now: one per distinct (sport, port, isn), with the latest
// expiry where two coincide, each timing out when its knock leaves the
// window (rounded down to the millisecond the kernel counts in). Elements
// already expired at now are left out, and so are the keys in skip.
func eachUnique(valid []Element, now time.Time, skip map[uint64]bool, fn func(sport, port uint16, isn uint32, ttl time.Duration)) {
	// The latest expiry of each (sport, port, isn); duplicates are rare
	// (two users whose knocks collide).
	best := make(map[uint64]int32, len(valid))
	for i, e := range valid {
		k := e.key()
		if j, ok := best[k]; !ok || e.Expires.After(valid[j].Expires) {
			best[k] = int32(i)
		}
	}
	for i, e := range valid {
		k := e.key()
		if best[k] != int32(i) || skip[k] {
			continue
		}
		if ttl := e.Expires.Sub(now).Truncate(time.Millisecond); ttl > 0 {
			fn(e.SPort, e.Port, e.ISN, ttl)
		}
	}
}

// eachValid calls fn with every element the valid and valid_sp sets get
// from s at now: Valid's as eachUnique gives them, then what Knocks
// yields, each with its remaining time; expired knocks and those in
// s.Spent are left out. sport is 0 for valid's.
func (s State) eachValid(now time.Time, fn func(sport, port uint16, isn uint32, ttl time.Duration)) {
	var skip map[uint64]bool
	if len(s.Spent) > 0 {
		skip = make(map[uint64]bool, len(s.Spent))
		for _, e := range s.Spent {
			skip[e.key()] = true
		}
	}
	eachUnique(s.Valid, now, skip, fn)
	if s.Knocks == nil {
		return
	}
	s.Knocks(func(e Element) bool {
		if skip[e.key()] {
			return true
		}
		if ttl := e.Expires.Sub(now).Truncate(time.Millisecond); ttl > 0 {
			fn(e.SPort, e.Port, e.ISN, ttl)
		}
		return true
	})
}

// PortElements returns the ports set's elements.
func PortElements(ports []uint16) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(ports))
	for _, p := range ports {
		out = append(out, nftables.SetElement{Key: portKey(p)})
	}
	return out
}

// appendDportSeq appends the key of "tcp dport . tcp sequence" for port and
// isn: the port in the first 4-byte slot of the concatenation, padded.
func appendDportSeq(b []byte, port uint16, isn uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, port)
	b = append(b, 0, 0)
	return binary.BigEndian.AppendUint32(b, isn)
}

// elementKey is an element's key in valid or used (sport 0) or in
// valid_sp or used_sp: "tcp sport . tcp dport . tcp sequence", the source
// port in the first 4-byte slot.
func elementKey(sport, port uint16, isn uint32) []byte {
	if sport == 0 {
		return appendDportSeq(nil, port, isn)
	}
	return appendDportSeq(append(binary.BigEndian.AppendUint16(nil, sport), 0, 0), port, isn)
}
