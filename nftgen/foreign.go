package nftgen

import (
	"fmt"

	"github.com/google/nftables"
)

// foreignSet says why the live set s is not one of ours that Apply can
// keep, or "": a name this package never uses, or another key length or
// kind (map, interval, timeout, dynamic) than ours of that name, which
// the kernel does not change in place.
func foreignSet(s *nftables.Set) string {
	want, ok := ourSet(s.Name)
	switch {
	case !ok:
		return fmt.Sprintf("set %s is not one of ours", s.Name)
	case s.KeyType.Bytes != want.KeyType.Bytes:
		return fmt.Sprintf("set %s has %d-byte keys, ours %d", s.Name, s.KeyType.Bytes, want.KeyType.Bytes)
	case s.IsMap || s.Interval || s.Anonymous || s.Constant:
		return fmt.Sprintf("set %s is a map, interval, anonymous or constant set", s.Name)
	case s.HasTimeout != want.HasTimeout || s.Dynamic != want.Dynamic:
		return fmt.Sprintf("set %s has other flags than ours", s.Name)
	}
	return ""
}

// foreignChain says why the live chain c is not one of ours that Apply
// can keep, or "": a name this package never uses, a base chain where
// ours is a regular one or the other way round, or another type, hook or
// priority, which the kernel does not change in place.
func foreignChain(c *nftables.Chain) string {
	want := ourChain(c.Name)
	switch {
	case want == nil:
		return fmt.Sprintf("chain %s is not one of ours", c.Name)
	case (c.Hooknum == nil) != (want.Hooknum == nil):
		if want.Hooknum == nil {
			return fmt.Sprintf("chain %s is a base chain, ours a regular one", c.Name)
		}
		return fmt.Sprintf("chain %s is a regular chain, ours a base chain", c.Name)
	case want.Hooknum == nil:
		return ""
	case *c.Hooknum != *want.Hooknum || c.Type != want.Type:
		return fmt.Sprintf("chain %s is on another hook or of another type", c.Name)
	case c.Priority == nil || *c.Priority != *want.Priority:
		return fmt.Sprintf("chain %s has another priority", c.Name)
	}
	return ""
}
