package nftgen

import (
	"fmt"
	"strings"
	"time"
)

// Render returns the table for s as `nft list ruleset` shows it once
// installed, with rule counters at zero. The valid and valid_sp sets'
// elements, which change every period, are summarised in comment lines
// before the table instead of listed; the ports are listed. The sessions
// sets are shown empty: what they hold is the host's connections of the moment.
func Render(s State, now time.Time) string {
	var b strings.Builder
	// valid's and valid_sp's elements together.
	n, lo, hi := 0, time.Duration(0), time.Duration(0)
	eachUnique(s.ValidList(), now, nil, func(_, _ uint16, _ uint32, ttl time.Duration) {
		if n == 0 {
			lo, hi = ttl, ttl
		}
		n, lo, hi = n+1, min(lo, ttl), max(hi, ttl)
	})
	fmt.Fprintf(&b, "# valid: %d elements at %s", n, now.UTC().Format(time.RFC3339))
	if n > 0 {
		fmt.Fprintf(&b, ", expiring in %s to %s", nftDuration(lo), nftDuration(hi))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "table inet %s {\n", s.Table)
	for _, x := range tableSets(Table(s.Table), s) {
		if sourcePortSet(x.Name) && !s.SourcePort {
			continue
		}
		fmt.Fprintf(&b, "\tset %s {\n\t\t%s\n", x.Name, x.typ)
		if x.Size != 0 {
			fmt.Fprintf(&b, "\t\tsize %d\n", x.Size)
		}
		if x.Dynamic {
			fmt.Fprintf(&b, "\t\tflags dynamic,timeout\n\t\ttimeout %s\n", nftDuration(x.Timeout))
		} else if x.HasTimeout {
			b.WriteString("\t\tflags timeout\n")
		}
		suffix := ""
		if x.Counter {
			b.WriteString("\t\tcounter\n")
			suffix = " counter packets 0 bytes 0"
		}
		switch x.Name {
		case SetPorts, SetUnknocked:
			b.WriteString(portList(s.sortedPorts(), suffix))
		case SetReset:
			b.WriteString(portList(sortPorts(s.ResetPorts), suffix))
		}
		b.WriteString("\t}\n\n")
	}
	rules := s.Rules.ruleList()
	for i, ch := range chainSpecs {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n", ch.name)
		if ch.hook != nil {
			fmt.Fprintf(&b, "\t\ttype filter hook %s; policy accept;\n", ch.listed)
		}
		for _, r := range rules {
			if r.chain == ch.name {
				fmt.Fprintf(&b, "\t\t%s\n", r.text)
			}
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// portList is a set's elements line for ports as nft lists it, each
// followed by suffix; nothing when there are none.
func portList(ports []uint16, suffix string) string {
	if len(ports) == 0 {
		return ""
	}
	strs := make([]string, len(ports))
	for i, p := range ports {
		strs[i] = fmt.Sprint(p) + suffix
	}
	return fmt.Sprintf("\t\telements = { %s }\n", strings.Join(strs, ", "))
}

// signed writes a priority offset as nft does: "- 10", "+ 10".
func signed(v int) string {
	if v < 0 {
		return fmt.Sprintf("- %d", -v)
	}
	return fmt.Sprintf("+ %d", v)
}

// nftDuration formats d as nft prints a set timeout: "1m30s", "2h", "500ms".
func nftDuration(d time.Duration) string {
	ms := d.Milliseconds()
	if ms == 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		ms   int64
		name string
	}{{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}} {
		if n := ms / u.ms; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			ms -= n * u.ms
		}
	}
	return b.String()
}
