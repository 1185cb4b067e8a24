//go:build linux

package nftgen

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/seqknock/seqknock/internal/netnstest"
)

// goldenStates are the states TestGolden installs: every mode and limit
// on (reset mode on one of two ports, both limits, drop logging), and every
// one off (drop mode only, no limits, no logging), and the limits keyed on
// other prefixes.
func goldenStates() map[string]State {
	all := testState()
	all.DropLogGroup = 24
	off := testState()
	off.ResetPorts = nil
	off.Rules = Rules{MarkBit: 1 << 23}
	prefixes := testState()
	prefixes.ResetPorts = []uint16{22, 2222}
	prefixes.Prefix4, prefixes.Prefix6 = 24, 56
	prefixes.Guess = Limit{Rate: 600, Unit: PerMinute, Burst: 5}
	prefixes.Global = Limit{}
	prefixes.LockedLookup = Limit{} // locked-out sources get no lookup
	return map[string]State{"all on": all, "all off": off, "prefixes": prefixes, "source port": sportState()}
}

// sportState is testState with source-port binding on: port 22's knock is
// bound to source port 40000 (valid_sp), 2222's is not (valid), and a
// spent 48-bit knock is in used_sp.
func sportState() State {
	s := testState()
	s.SourcePort = true
	s.Valid[0].SPort = 40000
	s.Spent = []Element{{SPort: 40001, Port: 22, ISN: 7, Expires: time.Unix(1_000_060, 0)}}
	return s
}

// TestGolden installs a table and compares `nft list ruleset` with Render,
// in a fresh namespace, for each of goldenStates.
func TestGolden(t *testing.T) {
	for name, s := range goldenStates() {
		t.Run(name, func(t *testing.T) { testGolden(t, s) })
	}
}

func testGolden(t *testing.T, s State) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "gold")
	c := &Conn{NetNS: ns.FD()}
	now := time.Unix(1_000_000, 0)
	res, err := c.Apply(s, now)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || !res.RulesRebuilt || res.Elements != 2 {
		t.Errorf("first apply: %+v", res)
	}
	if s.SourcePort {
		set := ns.MustRun("nft", "list", "set", "inet", "seqknock", SetValidSP)
		if want := "40000 . 22 . 2742790613 timeout 1m30s"; !strings.Contains(set, want) {
			t.Errorf("valid_sp listing lacks %q:\n%s", want, set)
		}
		used := ns.MustRun("nft", "list", "set", "inet", "seqknock", SetUsedSP)
		if want := "40001 . 22 . 7 "; !strings.Contains(used, want) {
			t.Errorf("used_sp listing lacks %q:\n%s", want, used)
		}
		if live, err := c.Read(s.Table); err != nil || !live.RulesCurrent || live.Rules != s.Rules || !live.SPSets {
			t.Errorf("read back: %+v, %v", live, err)
		}
	}
	listing := ns.MustRun("nft", "list", "ruleset")
	if diff := cmp.Diff(netnstest.DropComments(Render(s, now)), netnstest.NormalizeListing(listing)); diff != "" {
		t.Errorf("nft list ruleset differs from Render (-render +nft):\n%s\nlisting:\n%s", diff, listing)
	}
	// Elements list as nft writes them, and the listing loads back.
	set := ns.MustRun("nft", "list", "set", "inet", "seqknock", "valid")
	wants := []string{"22 . 2742790613 timeout 1m30s", "2222 . 185541829 timeout 2m"}
	if s.SourcePort {
		wants = wants[1:]
	}
	for _, want := range wants {
		if !strings.Contains(set, want) {
			t.Errorf("valid set listing lacks %q:\n%s", want, set)
		}
	}
	check := ns.Command("nft", "-c", "-f", "-")
	check.Stdin = strings.NewReader(listing)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("nft -c -f - refuses our listing: %v: %s", err, out)
	}
}

func TestApplyIdempotentKeepsCountersAndUsed(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "idem")
	c := &Conn{NetNS: ns.FD()}
	s := testState()
	now := time.Unix(1_000_000, 0)
	if _, err := c.Apply(s, now); err != nil {
		t.Fatal(err)
	}
	// A spent knock, as the kernel would add it.
	ns.MustRun("nft", "add", "element", "inet", "seqknock", "used", "{ 22 . 12345 }")
	res, err := c.Apply(s, now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if res.Created || res.RulesRebuilt || res.UsedRecreated {
		t.Errorf("second apply changed structure: %+v", res)
	}
	live, err := c.Read("seqknock")
	if err != nil {
		t.Fatal(err)
	}
	if !live.Exists || live.ValidCount != 2 || live.UsedCount != 1 || !live.RulesCurrent || live.MarkBit != 1<<23 {
		t.Errorf("live after second apply: %+v", live)
	}
	if got := live.Ports; len(got) != 2 || got[0] != 22 || got[1] != 2222 {
		t.Errorf("ports %v", got)
	}
	if len(live.UsedKeys) != 1 || live.UsedKeys[0] != (Key{Port: 22, ISN: 12345}) {
		t.Errorf("used keys %v", live.UsedKeys)
	}
	valid := map[Key]bool{}
	for _, k := range live.ValidKeys {
		valid[k] = true
	}
	for _, e := range s.Valid {
		if !valid[Key{Port: e.Port, ISN: e.ISN}] {
			t.Errorf("valid keys %v lack %d . %d", live.ValidKeys, e.Port, e.ISN)
		}
	}

	// A new window replaces valid wholly; used keeps its element.
	s.Valid = []Element{{Port: 22, ISN: 7, Expires: now.Add(time.Minute)}}
	s.Ports, s.ResetPorts = []uint16{22}, nil
	if _, err := c.Apply(s, now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	set := ns.MustRun("nft", "list", "set", "inet", "seqknock", "valid")
	if strings.Contains(set, "2742790613") || !strings.Contains(set, "22 . 7 ") {
		t.Errorf("valid not replaced:\n%s", set)
	}
	live, _ = c.Read("seqknock")
	if live.UsedCount != 1 || len(live.Ports) != 1 {
		t.Errorf("after window change: %+v", live)
	}

	// A new mark bit rebuilds the rules; a new window length recreates used
	// and carries its elements.
	s.MarkBit = 1 << 5
	s.UsedTimeout = 3 * time.Minute
	res, err = c.Apply(s, now.Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !res.RulesRebuilt || !res.UsedRecreated {
		t.Errorf("config change: %+v", res)
	}
	live, _ = c.Read("seqknock")
	if live.MarkBit != 1<<5 || live.UsedCount != 1 || live.UsedTimeout != 3*time.Minute {
		t.Errorf("after config change: %+v", live)
	}
	if out := ns.MustRun("nft", "list", "chain", "inet", "seqknock", "knock"); !strings.Contains(out, "ct mark & 0x00000020 == 0x00000020 meta mark set meta mark | 0x01000000 accept") {
		t.Errorf("rules not rebuilt:\n%s", out)
	}
}

// TestApplyAllOrNothing makes the kernel refuse one part of a batch and
// checks that no part of it was applied.
func TestApplyAllOrNothing(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "atom")
	c := &Conn{NetNS: ns.FD()}
	s := testState()
	now := time.Unix(1_000_000, 0)
	if _, err := c.Apply(s, now); err != nil {
		t.Fatal(err)
	}
	// Someone replaced the valid set with one of another type: our NEWSET
	// for valid fails with EEXIST, after the ports set was already flushed
	// and refilled in the same batch.
	fix := ns.Command("nft", "-f", "-")
	fix.Stdin = strings.NewReader("flush chain inet seqknock knock\nflush chain inet seqknock syn\ndelete set inet seqknock valid\nadd set inet seqknock valid { type ipv4_addr; }\n")
	if out, err := fix.CombinedOutput(); err != nil {
		t.Fatalf("prepare: %v: %s", err, out)
	}
	mid := ns.MustRun("nft", "list", "ruleset")
	s2 := s
	s2.Ports = []uint16{22, 80}
	s2.Valid = []Element{{Port: 80, ISN: 99, Expires: now.Add(time.Minute)}}
	_, err := c.Apply(s2, now)
	if err == nil {
		t.Fatal("apply over a conflicting set succeeded")
	}
	t.Logf("refused as expected: %v", err)
	after := ns.MustRun("nft", "list", "ruleset")
	if diff := cmp.Diff(netnstest.NormalizeListing(mid), netnstest.NormalizeListing(after)); diff != "" {
		t.Errorf("failed apply changed the ruleset:\n%s", diff)
	}
	if strings.Contains(after, " 80") {
		t.Errorf("part of the failed batch applied:\n%s", after)
	}
}

func TestTeardownTouchesNothingElse(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "tear")
	other := ns.Command("nft", "-f", "-")
	other.Stdin = strings.NewReader("table inet other {\n chain c {\n type filter hook input priority 0; policy accept;\n }\n}\ntable ip legacy {\n chain c {\n }\n}\n")
	if out, err := other.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	c := &Conn{NetNS: ns.FD()}
	if _, err := c.Apply(testState(), time.Unix(1_000_000, 0)); err != nil {
		t.Fatal(err)
	}
	removed, err := c.Teardown("seqknock")
	if err != nil || !removed {
		t.Fatalf("teardown: %v %v", removed, err)
	}
	out := ns.MustRun("nft", "list", "ruleset")
	if strings.Contains(out, "seqknock") || !strings.Contains(out, "table inet other") || !strings.Contains(out, "table ip legacy") {
		t.Errorf("after teardown:\n%s", out)
	}
	if removed, err := c.Teardown("seqknock"); err != nil || removed {
		t.Errorf("second teardown: %v %v", removed, err)
	}
	if live, err := c.Read("seqknock"); err != nil || live.Exists {
		t.Errorf("read after teardown: %+v %v", live, err)
	}
}

// TestAddValid: a rotation adds knocks to the valid set and keeps those
// already there; when the table is not as the state describes (no table,
// then other rules, reset ports, protected ports or used set timeout) it
// writes nothing and says so.
func TestAddValid(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "addv")
	c := &Conn{NetNS: ns.FD()}
	s := testState()
	now := time.Unix(1_000_000, 0)
	if _, err := c.AddValid(s, now); !errors.Is(err, ErrStale) {
		t.Fatalf("add to no table: %v, want ErrStale", err)
	}
	if out := ns.MustRun("nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Fatalf("a refused rotation wrote:\n%s", out)
	}
	if _, err := c.Apply(s, now); err != nil {
		t.Fatal(err)
	}
	sameShape(t, c, s)
	rot := s
	rot.Valid = nil
	rot.KnockCount = len(s.Valid)
	rot.Knocks = func(yield func(Element) bool) { yield(Element{Port: 22, ISN: 4242, Expires: now.Add(2 * time.Minute)}) }
	res, err := c.AddValid(rot, now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if res.Elements != 1 || res.Created || res.RulesRebuilt || res.Bytes == 0 {
		t.Errorf("rotation result %+v", res)
	}
	live, err := c.Read("seqknock")
	if err != nil {
		t.Fatal(err)
	}
	want := []Key{{Port: 22, ISN: 4242}, {Port: 22, ISN: 2742790613}, {Port: 2222, ISN: 185541829}}
	got := map[Key]bool{}
	for _, k := range live.ValidKeys {
		got[k] = true
	}
	if len(got) != len(want) || !got[want[0]] || !got[want[1]] || !got[want[2]] {
		t.Errorf("valid after rotation %v, want %v", live.ValidKeys, want)
	}
	other := rot
	other.Rules.MarkBit = 1 << 5
	if _, err := c.AddValid(other, now); !errors.Is(err, ErrStale) {
		t.Errorf("add with other rules: %v, want ErrStale", err)
	}
	other = rot
	other.ResetPorts = []uint16{22}
	if _, err := c.AddValid(other, now); !errors.Is(err, ErrStale) {
		t.Errorf("add with other ports in reset mode: %v, want ErrStale", err)
	}
	// These two would add a knock of their own, which must not appear.
	extra := func(yield func(Element) bool) { yield(Element{Port: 22, ISN: 999, Expires: now.Add(2 * time.Minute)}) }
	other = rot
	other.Knocks = extra
	other.Ports = []uint16{2222, 22, 2022}
	if _, err := c.AddValid(other, now); !errors.Is(err, ErrStale) {
		t.Errorf("add with another protected port: %v, want ErrStale", err)
	}
	other = rot
	other.Knocks = extra
	other.UsedTimeout = 2 * rot.UsedTimeout
	if _, err := c.AddValid(other, now); !errors.Is(err, ErrStale) {
		t.Errorf("add with another used set timeout: %v, want ErrStale", err)
	}
	if live, err := c.Read("seqknock"); err != nil || slices.Contains(live.ValidKeys, Key{Port: 22, ISN: 999}) {
		t.Errorf("after the refused rotations: valid %v (%v), want no 22 . 999", live.ValidKeys, err)
	}
}

// sameShape checks that the table c reads back has the shape of s, the
// state just applied: liveShape and shapeOf agree on every property.
func sameShape(t *testing.T, c *Conn, s State) {
	t.Helper()
	live, err := c.Read(s.Table)
	if err != nil {
		t.Fatal(err)
	}
	have, ok := liveShape(s.Table, live)
	if want := shapeOf(s); !ok || have != want {
		t.Errorf("table read back: shape %+v (whole: %v), want %+v", have, ok, want)
	}
}

// TestSourcePortOnOff turns source-port binding on in a table built
// without it, rotates a 48-bit knock in, and turns it off again: each time
// the listing is Render's (the sets appear and go with the rules).
func TestSourcePortOnOff(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "sport")
	c := &Conn{NetNS: ns.FD()}
	now := time.Unix(1_000_000, 0)
	same := func(what string, s State) {
		t.Helper()
		listing := ns.MustRun("nft", "list", "ruleset")
		if diff := cmp.Diff(netnstest.DropComments(Render(s, now)), netnstest.NormalizeListing(listing)); diff != "" {
			t.Errorf("%s: nft list ruleset differs from Render (-render +nft):\n%s", what, diff)
		}
	}
	off := testState()
	if _, err := c.Apply(off, now); err != nil {
		t.Fatal(err)
	}
	on := sportState()
	if _, err := c.AddValid(on, now); !errors.Is(err, ErrStale) {
		t.Errorf("rotation into a table without source-port sets: %v, want ErrStale", err)
	}
	if res, err := c.Apply(on, now); err != nil || !res.RulesRebuilt {
		t.Fatalf("turning it on: %+v, %v", res, err)
	}
	same("on", on)
	sameShape(t, c, on)
	rot := on
	rot.Valid = []Element{{SPort: 50000, Port: 22, ISN: 99, Expires: now.Add(time.Minute)}}
	rot.Spent = nil
	if res, err := c.AddValid(rot, now); err != nil || res.Elements != 1 {
		t.Fatalf("rotation: %+v, %v", res, err)
	}
	set := ns.MustRun("nft", "list", "set", "inet", "seqknock", SetValidSP)
	for _, want := range []string{"40000 . 22 . 2742790613", "50000 . 22 . 99"} {
		if !strings.Contains(set, want) {
			t.Errorf("after the rotation valid_sp lacks %q:\n%s", want, set)
		}
	}
	spent, err := c.Spent(on.Table, now)
	if err != nil || len(spent) != 1 || spent[0].SPort != 40001 || spent[0].ISN != 7 {
		t.Errorf("spent: %+v, %v", spent, err)
	}
	if _, err := c.Apply(off, now); err != nil {
		t.Fatalf("turning it off: %v", err)
	}
	same("off again", off)
	bad := off
	bad.Valid = append(bad.Valid[:1:1], Element{SPort: 1, Port: 22, ISN: 1, Expires: now.Add(time.Minute)})
	if _, err := c.Apply(bad, now); err == nil {
		t.Error("a bound knock without source-port rules was applied")
	}

	if _, err := c.Apply(on, now); err != nil {
		t.Fatalf("on again: %v", err)
	}
	// A new window length recreates used_sp with used, and carries its
	// elements (none in Spent this time: only the live set has it).
	longer := on
	longer.UsedTimeout = 3 * time.Minute
	longer.Spent = nil
	if res, err := c.Apply(longer, now); err != nil || !res.UsedRecreated {
		t.Fatalf("longer window: %+v, %v", res, err)
	}
	// (Not compared with Render: a recreated set lists last, used too.)
	if used := ns.MustRun("nft", "list", "set", "inet", "seqknock", SetUsedSP); !strings.Contains(used, "timeout 3m") || !strings.Contains(used, "40001 . 22 . 7 ") {
		t.Errorf("used_sp after the longer window:\n%s", used)
	}
}

// TestAddValidUnchanged: a rotation right after c's own Apply, and after
// its own rotation, does not read the table (nothing has committed since);
// after any foreign commit in the namespace, or for a state of another
// shape, it reads it again, and finds a foreign change that makes the
// table stale.
func TestAddValidUnchanged(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "addunch")
	reads := 0
	c := &Conn{NetNS: ns.FD(), onRead: func() { reads++ }}
	s := testState()
	now := time.Unix(1_000_000, 0)
	if _, err := c.Apply(s, now); err != nil {
		t.Fatal(err)
	}
	rot := s
	rot.Valid = nil
	rot.KnockCount = len(s.Valid)
	isn := uint32(4000)
	rot.Knocks = func(yield func(Element) bool) {
		isn++
		yield(Element{Port: 22, ISN: isn, Expires: now.Add(2 * time.Minute)})
	}
	rotate := func(what string, s State, wantReads int, wantErr error) {
		t.Helper()
		reads = 0
		_, err := c.AddValid(s, now)
		if !errors.Is(err, wantErr) {
			t.Fatalf("%s: %v, want %v", what, err, wantErr)
		}
		if reads != wantReads {
			t.Fatalf("%s: %d reads of the table, want %d", what, reads, wantReads)
		}
	}
	rotate("after Apply", rot, 0, nil)
	rotate("after a rotation", rot, 0, nil)
	other := rot
	other.Rules.MarkBit = 1 << 5
	rotate("other rules", other, 1, ErrStale)
	ns.MustRun("nft", "add", "table", "inet", "someone-else")
	rotate("after a foreign commit elsewhere", rot, 1, nil)
	rotate("after that rotation", rot, 0, nil)
	ns.MustRun("nft", "delete", "element", "inet", "seqknock", SetPorts, "{ 2222 }")
	rotate("after a foreign change to the table", rot, 1, ErrStale)
	if _, err := c.Apply(s, now); err != nil {
		t.Fatal(err)
	}
	rotate("after the repair", rot, 0, nil)
}
