package socks

import (
	"net/netip"
	"path"

	"github.com/seqknock/seqknock/client"
)

// Cover returns the [[host]] of cfg that covers d, and the name to look up
// in client.Resolve, or nil when none does: the request is refused and
// nothing is dialed.
//
// A name matches a [[host]] as `seqknock proxy` matches it (its pattern,
// first match wins). An address matches only a [[host]] whose match is that
// address written out (any spelling of it: 2001:DB8::1 covers 2001:db8::1),
// or a pattern that matches the address's canonical text (198.18.0.*, or
// "*"): the [[host]] names are never resolved to match an address.
func Cover(cfg *client.Config, d Dest) (e *client.HostEntry, name string) {
	if !d.IP.IsValid() {
		if e := cfg.Lookup(d.Host, d.Port); e != nil {
			return e, d.Host
		}
		return nil, ""
	}
	for i := range cfg.Hosts {
		e := &cfg.Hosts[i]
		if e.Port != 0 && e.Port != d.Port {
			continue
		}
		if a, err := netip.ParseAddr(e.Match); err == nil && a.Zone() == "" {
			if a.Unmap() == d.IP {
				// Resolve looks the entry up by its own spelling.
				return e, e.Match
			}
			continue
		}
		if ok, _ := path.Match(e.Match, d.Host); ok {
			return e, d.Host
		}
	}
	return nil, ""
}
