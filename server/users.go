package server

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/seqknock/seqknock/totp"
)

// UserChanges names the users a reload from old to cfg added, removed and
// re-keyed (a key added, removed or replaced, or a not_after changed), as
// log attributes; a list that would be empty is left out.
func UserChanges(old, cfg *Config) []any {
	before := map[string][]string{}
	for _, u := range old.Users {
		before[u.Name] = keyIdentities(u)
	}
	var added, removed, rekeyed []string
	seen := map[string]bool{}
	for _, u := range cfg.Users {
		seen[u.Name] = true
		keys, ok := before[u.Name]
		switch {
		case !ok:
			added = append(added, u.Name)
		case !slices.Equal(keys, keyIdentities(u)):
			rekeyed = append(rekeyed, u.Name)
		}
	}
	for _, u := range old.Users {
		if !seen[u.Name] {
			removed = append(removed, u.Name)
		}
	}
	var attrs []any
	for _, l := range []struct {
		name  string
		users []string
	}{{"added", added}, {"removed", removed}, {"rekeyed", rekeyed}} {
		if len(l.users) > 0 {
			attrs = append(attrs, l.name, strings.Join(l.users, ","))
		}
	}
	return attrs
}

// keyIdentities are a user's keys as fingerprints with their not_after,
// sorted: what makes its knocks.
func keyIdentities(u User) []string {
	out := make([]string, len(u.Keys))
	for i, k := range u.Keys {
		out[i] = totp.Fingerprint(k.Key) + "/" + k.NotAfter.UTC().Format(time.RFC3339)
	}
	slices.Sort(out)
	return out
}

// UserReport is one user in `seqknockd users`.
type UserReport struct {
	Name  string      `json:"name"`
	Ports []uint16    `json:"ports"`
	Keys  []KeyReport `json:"keys"`
	// LastKnock is the user's last admitted knock the daemon recorded;
	// nil when there is none.
	LastKnock *AdmissionRecord `json:"last_knock"`
}

// KeyReport is one key of a user: never the key, only its fingerprint.
type KeyReport struct {
	File        string    `json:"file"`
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	Expired     bool      `json:"expired"`
}

// Users reports every user of cfg at now, with the last knocks of info
// (nil: none known).
func Users(cfg *Config, info *DaemonInfo, now time.Time) []UserReport {
	ports := userPorts(cfg)
	out := make([]UserReport, 0, len(cfg.Users))
	for _, u := range cfg.Users {
		r := UserReport{Name: u.Name, Ports: append([]uint16{}, ports(u.Name)...), Keys: []KeyReport{}}
		for _, k := range u.Keys {
			r.Keys = append(r.Keys, KeyReport{File: k.File, Fingerprint: totp.Fingerprint(k.Key), NotAfter: k.NotAfter, Expired: !k.ValidAt(now)})
		}
		if info != nil {
			if a, ok := info.LastKnocks[u.Name]; ok {
				r.LastKnock = &a
			}
		}
		out = append(out, r)
	}
	return out
}

// WriteUsers writes the users as text: a line per user, then one per key.
func WriteUsers(w io.Writer, users []UserReport, now time.Time) {
	for _, u := range users {
		last := "never (since the daemon's info began)"
		if u.LastKnock != nil {
			last = fmt.Sprintf("%s (%s ago) from %s to port %d", u.LastKnock.Time.UTC().Format(time.RFC3339),
				now.Sub(u.LastKnock.Time).Round(time.Second), u.LastKnock.Src.Addr(), u.LastKnock.Dst.Port())
		}
		fmt.Fprintf(w, "%s: ports %s; last admitted knock: %s\n", u.Name, portList(u.Ports), last)
		for _, k := range u.Keys {
			exp := "no expiry"
			if !k.NotAfter.IsZero() {
				exp = "not after " + k.NotAfter.UTC().Format(time.RFC3339)
				if k.Expired {
					exp += " (EXPIRED)"
				}
			}
			fmt.Fprintf(w, "  key %s %s, %s\n", k.Fingerprint, k.File, exp)
		}
	}
}

func portList(ps []uint16) string {
	if len(ps) == 0 {
		return "none"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}

// AdmissionReport is one recent admission in `seqknockd admissions`, with
// whether its connection is still open.
type AdmissionReport struct {
	AdmissionRecord
	Open bool `json:"open"`
}

// Admissions are the recent admissions of info, oldest first, each marked
// open when its connection is among open (the connected sockets of the
// protected ports, as Src = the peer, Dst = the local end).
func Admissions(info *DaemonInfo, open []SessionTuple) []AdmissionReport {
	live := map[SessionTuple]bool{}
	for _, s := range open {
		live[SessionTuple{unmapAP(s.Src), unmapAP(s.Dst)}] = true
	}
	out := []AdmissionReport{}
	if info == nil {
		return out
	}
	for _, a := range info.Admissions {
		out = append(out, AdmissionReport{a, live[SessionTuple{unmapAP(a.Src), unmapAP(a.Dst)}]})
	}
	return out
}

// SessionTuple is a connection: the peer and the local end.
type SessionTuple struct{ Src, Dst netip.AddrPort }

func unmapAP(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// WriteAdmissions writes the admissions as text, one a line; openOnly
// keeps those still open.
func WriteAdmissions(w io.Writer, as []AdmissionReport, openOnly bool) {
	n := 0
	for _, a := range as {
		if openOnly && !a.Open {
			continue
		}
		n++
		user, state := a.User, "closed"
		if user == "" {
			user = "(unknown)"
		}
		if a.Open {
			state = "OPEN"
		}
		fmt.Fprintf(w, "%s %s %s -> %s %s\n", a.Time.UTC().Format(time.RFC3339), user, a.Src, a.Dst, state)
	}
	if n == 0 {
		fmt.Fprintln(w, "no admissions recorded")
	}
}
