package netnstest

import (
	"regexp"
	"strings"
)

var (
	reCounter  = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	reElements = regexp.MustCompile(`(?s)\t\telements = \{[^}]*\}\n`)
)

// NormalizeListing drops from `nft list ruleset` output what seqknock's
// rendered ruleset summarises instead of listing: the valid and used sets'
// elements, and counter values (set to zero).
func NormalizeListing(listing string) string {
	var out strings.Builder
	for _, b := range strings.SplitAfter(listing, "\n\n") {
		if strings.Contains(b, "\tset valid {") || strings.Contains(b, "\tset used {") ||
			strings.Contains(b, "\tset valid_sp {") || strings.Contains(b, "\tset used_sp {") {
			b = reElements.ReplaceAllString(b, "")
		}
		out.WriteString(b)
	}
	return reCounter.ReplaceAllString(out.String(), "counter packets 0 bytes 0")
}

// DropComments removes the "#" lines a rendered ruleset starts with.
func DropComments(s string) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			out.WriteString(l)
		}
	}
	return out.String()
}
