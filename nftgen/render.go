package nftgen

import (
	"fmt"
	"strings"
	"time"
)

// Render returns the table for s as `nft list ruleset` shows it once
// installed, with rule counters at zero. The valid set's elements, which
// change every period, are summarised in comment lines before the table
// instead of listed; the ports are listed. The sessions sets are shown
// empty: what they hold is the host's connections of the moment.
func Render(s State, now time.Time) string {
	var b strings.Builder
	els := Elements(s.Valid, now)
	fmt.Fprintf(&b, "# valid: %d elements at %s", len(els), now.UTC().Format(time.RFC3339))
	if len(els) > 0 {
		lo, hi := els[0].Timeout, els[0].Timeout
		for _, e := range els {
			lo, hi = min(lo, e.Timeout), max(hi, e.Timeout)
		}
		fmt.Fprintf(&b, ", expiring in %s to %s", nftDuration(lo), nftDuration(hi))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "table inet %s {\n", s.Table)
	b.WriteString("\tset ports {\n\t\ttype inet_service\n")
	if ps := s.sortedPorts(); len(ps) > 0 {
		strs := make([]string, len(ps))
		for i, p := range ps {
			strs[i] = fmt.Sprint(p)
		}
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(strs, ", "))
	}
	b.WriteString("\t}\n\n")
	b.WriteString("\tset valid {\n\t\ttypeof tcp dport . tcp sequence\n\t\tflags timeout\n\t}\n\n")
	fmt.Fprintf(&b, "\tset used {\n\t\ttypeof tcp dport . tcp sequence\n\t\tsize %d\n\t\tflags dynamic,timeout\n\t\ttimeout %s\n\t}\n\n",
		s.usedSize(), nftDuration(s.UsedTimeout))
	b.WriteString("\tset sessions4 {\n\t\ttype ipv4_addr . inet_service . ipv4_addr . inet_service\n\t}\n\n")
	b.WriteString("\tset sessions6 {\n\t\ttype ipv6_addr . inet_service . ipv6_addr . inet_service\n\t}\n\n")
	rules := s.Rules.ruleList()
	for i, ch := range []struct{ name, header string }{
		{ChainInput, fmt.Sprintf("type filter hook input priority filter %s; policy accept;", signed(InputPriority))},
		{ChainKnock, ""},
	} {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n", ch.name)
		if ch.header != "" {
			fmt.Fprintf(&b, "\t\t%s\n", ch.header)
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
