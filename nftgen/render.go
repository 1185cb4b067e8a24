package nftgen

import (
	"fmt"
	"strings"
	"time"
)

// Render returns the table for s as `nft list ruleset` shows it once
// installed, with rule counters at zero. The valid and valid_sp sets'
// elements, which change every period, are summarised in comment lines
// before the table instead of listed; the ports are listed. The sessions sets are shown
// empty: what they hold is the host's connections of the moment.
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
	fmt.Fprintf(&b, "\tset ports {\n\t\ttype inet_service\n%s\t}\n\n", portList(s.sortedPorts(), ""))
	b.WriteString("\tset valid {\n\t\ttypeof tcp dport . tcp sequence\n\t\tflags timeout\n\t}\n\n")
	fmt.Fprintf(&b, "\tset used {\n\t\ttypeof tcp dport . tcp sequence\n\t\tsize %d\n\t\tflags dynamic,timeout\n\t\ttimeout %s\n\t}\n\n",
		s.usedSize(), nftDuration(s.UsedTimeout))
	b.WriteString("\tset sessions4 {\n\t\ttype ipv4_addr . inet_service . ipv4_addr . inet_service\n\t}\n\n")
	b.WriteString("\tset sessions6 {\n\t\ttype ipv6_addr . inet_service . ipv6_addr . inet_service\n\t}\n\n")
	fmt.Fprintf(&b, "\tset %s {\n\t\ttype inet_service\n%s\t}\n\n", SetReset, portList(sortPorts(s.ResetPorts), ""))
	fmt.Fprintf(&b, "\tset %s {\n\t\ttype inet_service\n\t\tcounter\n%s\t}\n\n", SetUnknocked, portList(s.sortedPorts(), " counter packets 0 bytes 0"))
	for _, m := range []struct {
		name, typ string
		timeout   time.Duration
	}{
		{SetGuess4, "ipv4_addr", GuessTimeout}, {SetGuess6, "ipv6_addr", GuessTimeout},
		{SetLimited4, "ipv4_addr", LockoutTimeout}, {SetLimited6, "ipv6_addr", LockoutTimeout},
	} {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n\t\tsize %d\n\t\tflags dynamic,timeout\n\t\ttimeout %s\n\t}\n\n",
			m.name, m.typ, DefaultSetSize, nftDuration(m.timeout))
	}
	if s.SourcePort {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttypeof %s\n\t\tflags timeout\n\t}\n\n", SetValidSP, sportKeyText)
		fmt.Fprintf(&b, "\tset %s {\n\t\ttypeof %s\n\t\tsize %d\n\t\tflags dynamic,timeout\n\t\ttimeout %s\n\t}\n\n",
			SetUsedSP, sportKeyText, s.usedSize(), nftDuration(s.UsedTimeout))
	}
	rules := s.Rules.ruleList()
	headers := map[string]string{
		ChainInput: fmt.Sprintf("type filter hook input priority filter %s; policy accept;", signed(InputPriority)),
		ChainPre:   "type filter hook prerouting priority raw; policy accept;",
	}
	for i, ch := range chainOrder {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n", ch)
		if h := headers[ch]; h != "" {
			fmt.Fprintf(&b, "\t\t%s\n", h)
		}
		for _, r := range rules {
			if r.chain == ch {
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
