//go:build linux

package nftgen

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestApplyReplacesForeignTable: a table of our name that Apply cannot
// change into its own shape in place (a base chain on another priority, a
// set of another type, a chain of its own) is replaced whole in one
// transaction, and the knocks spent in its used set, where it has ours,
// stay spent.
func TestApplyReplacesForeignTable(t *testing.T) {
	cases := []struct {
		name string
		// nft is loaded with nft -f after our table is installed and a
		// knock spent.
		nft string
		// keepsUsed: the foreign table still holds our used set, whose
		// spent knock must be carried over.
		keepsUsed bool
	}{
		{"flushed and redefined", "flush ruleset\ntable inet seqknock {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n", false},
		{"set of another type", "flush ruleset\ntable inet seqknock {\n\tset valid {\n\t\ttype ipv4_addr;\n\t}\n}\n", false},
		{"input chain moved", "flush chain inet seqknock input\ndelete chain inet seqknock input\nadd chain inet seqknock input { type filter hook input priority filter; policy accept; }\n", true},
		{"input chain made regular", "flush chain inet seqknock input\ndelete chain inet seqknock input\nadd chain inet seqknock input\n", true},
		{"chain of its own", "add chain inet seqknock extra { type filter hook input priority -300; policy accept; }\nadd rule inet seqknock extra tcp dport 22 meta mark set 0x800000\n", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			netnstest.RequireRoot(t)
			ns := netnstest.New(t, "foreign")
			c := &Conn{NetNS: ns.FD()}
			s := testState()
			now := time.Unix(1_000_000, 0)
			if _, err := c.Apply(s, now); err != nil {
				t.Fatal(err)
			}
			ns.MustRun("nft", "add", "element", "inet", "seqknock", "used", "{ 22 . 12345 }")
			load := ns.Command("nft", "-f", "-")
			load.Stdin = strings.NewReader(tc.nft)
			if out, err := load.CombinedOutput(); err != nil {
				t.Fatalf("nft -f: %v: %s", err, out)
			}
			res, err := c.Apply(s, now)
			if err != nil {
				t.Fatalf("apply over the foreign table: %v", err)
			}
			if !res.Replaced || !res.RulesRebuilt {
				t.Errorf("result %+v, want the table replaced", res)
			}
			listing := ns.MustRun("nft", "list", "ruleset")
			// Render lists used without elements; compare the rest.
			got := netnstest.NormalizeListing(listing)
			if !tc.keepsUsed {
				if diff := cmp.Diff(netnstest.DropComments(Render(s, now)), got); diff != "" {
					t.Errorf("ruleset after the replacement differs from Render (-render +nft):\n%s", diff)
				}
			}
			if strings.Contains(listing, "extra") || strings.Contains(listing, "priority filter;") {
				t.Errorf("foreign objects left:\n%s", listing)
			}
			live, err := c.Read(s.Table)
			if err != nil {
				t.Fatal(err)
			}
			if !live.RulesCurrent || live.Foreign != "" || live.ValidCount != 2 {
				t.Errorf("live after the replacement: current %v, foreign %q, valid %d", live.RulesCurrent, live.Foreign, live.ValidCount)
			}
			spent := len(live.UsedKeys) == 1 && live.UsedKeys[0] == (Key{Port: 22, ISN: 12345})
			if tc.keepsUsed && !spent {
				t.Errorf("used keys %v, want the spent knock carried over", live.UsedKeys)
			}
			// Once replaced, the next apply changes it in place.
			res, err = c.Apply(s, now)
			if err != nil || res.Replaced || res.RulesRebuilt {
				t.Errorf("apply after the replacement: %+v, %v", res, err)
			}
		})
	}
}

// TestOwnTableNotForeign: a table Apply made, in every mode the golden
// states cover, reads back as ours and is never replaced.
func TestOwnTableNotForeign(t *testing.T) {
	netnstest.RequireRoot(t)
	for name, s := range goldenStates() {
		ns := netnstest.New(t, "own")
		c := &Conn{NetNS: ns.FD()}
		now := time.Unix(1_000_000, 0)
		for i := range 2 {
			res, err := c.Apply(s, now)
			if err != nil || res.Replaced {
				t.Errorf("%s: apply %d: %+v, %v", name, i, res, err)
			}
		}
		live, err := c.Read(s.Table)
		if err != nil || live.Foreign != "" {
			t.Errorf("%s: read back as foreign: %q, %v", name, live.Foreign, err)
		}
	}
}
