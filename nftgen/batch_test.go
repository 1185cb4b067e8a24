package nftgen

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current code")

// testState is the state the kernel tests install.
func testState() State {
	exp := time.Unix(1_000_090, 0)
	return State{
		Table:      "seqknock",
		Ports:      []uint16{2222, 22},
		ResetPorts: []uint16{2222},
		Rules: Rules{MarkBit: 1 << 23, PacketMarkBit: 1 << 24, LogGroup: 23,
			Guess: Limit{Rate: 10, Unit: PerSecond, Burst: 20}, Prefix4: 32, Prefix6: 64,
			Global:       Limit{Rate: 1000, Unit: PerSecond, Burst: GlobalBurst},
			LockedLookup: Limit{Rate: 2000, Unit: PerSecond, Burst: 2000}},
		UsedTimeout: 90 * time.Second,
		Valid: []Element{
			{Port: 22, ISN: 2742790613, Expires: exp},
			{Port: 2222, ISN: 185541829, Expires: exp.Add(30 * time.Second)},
		},
	}
}

// batchState is testState with three valid elements Apply leaves out, and
// spent knocks: one spent until 60 s after now goes into used (and out of
// valid), one already over is left out.
func batchState() State {
	s := testState()
	exp := time.Unix(1_000_090, 0)
	s.Valid = append(s.Valid,
		Element{Port: 22, ISN: 2742790613, Expires: exp.Add(-30 * time.Second)}, // collides: the later expiry wins
		Element{Port: 22, ISN: 5, Expires: time.Unix(1_000_000, 0)},             // expired at now: left out
		Element{Port: 2222, ISN: 77, Expires: exp},                              // spent: left out
	)
	s.Spent = []Element{
		{Port: 2222, ISN: 77, Expires: time.Unix(1_000_060, 0)},
		{Port: 22, ISN: 78, Expires: time.Unix(999_999, 0)},
	}
	return s
}

// TestBatchGolden records the transaction Apply sends, without a kernel,
// and compares a readable rendering of it with testdata/batch.golden. A
// change to any rule, set or element encoding shows up here first; run
// `go test ./nftgen -run TestBatchGolden -update` to accept it.
func TestBatchGolden(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := batchState()
	current := &Live{Exists: true, RulesCurrent: true, Rules: s.Rules, UsedExists: true, UsedTimeout: s.UsedTimeout, UsedSize: s.usedSize()}
	cases := []struct {
		name  string
		live  *Live
		carry []nftables.SetElement
		want  Result
	}{
		{"create: no table yet", &Live{}, nil, Result{Created: true, RulesRebuilt: true, Elements: 2}},
		{"period: table and rules current", current, nil, Result{Elements: 2}},
		{"mark bit changed: rules rebuilt", &Live{Exists: true, RulesCurrent: true, Rules: Rules{MarkBit: 1 << 5}, UsedExists: true, UsedTimeout: s.UsedTimeout, UsedSize: s.usedSize()}, nil,
			Result{RulesRebuilt: true, Elements: 2}},
		{"window changed: used recreated, spent knocks carried", &Live{Exists: true, RulesCurrent: true, Rules: s.Rules, UsedExists: true, UsedTimeout: time.Minute, UsedSize: s.usedSize()},
			[]nftables.SetElement{{Key: []byte{0, 22, 0, 0, 0, 0, 0x30, 0x39}, Timeout: 42 * time.Second}},
			Result{RulesRebuilt: true, UsedRecreated: true, Elements: 2}},
	}
	var out strings.Builder
	for _, c := range cases {
		b, err := buildBatch(s, now, c.live, c.carry, nil, false)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if b.res != c.want {
			t.Errorf("%s: result %+v, want %+v", c.name, b.res, c.want)
		}
		fmt.Fprintf(&out, "=== %s\n", c.name)
		msgs, err := b.messages()
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString(renderBatch(msgs))
		out.WriteString("\n")
	}
	// A rotation: the new counter's knocks (streamed through Knocks) added,
	// valid not flushed, spent ones left out, sessions refilled; nothing else.
	rot := testState()
	rot.Valid = nil
	rot.Spent = s.Spent
	rot.Knocks = func(yield func(Element) bool) {
		for _, e := range []Element{{Port: 22, ISN: 99, Expires: time.Unix(1_000_120, 0)}, {Port: 2222, ISN: 77, Expires: time.Unix(1_000_120, 0)}} {
			if !yield(e) {
				return
			}
		}
	}
	b, err := buildAddBatch(rot, now)
	if err != nil {
		t.Fatal(err)
	}
	if b.res != (Result{Elements: 1}) {
		t.Errorf("rotation: result %+v", b.res)
	}
	msgs, err := b.messages()
	if err != nil {
		t.Fatal(err)
	}
	out.WriteString("=== rotation: one new knock added, valid not flushed\n" + renderBatch(msgs) + "\n")
	golden := filepath.Join("testdata", "batch.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(out.String(), "\n")); diff != "" {
		t.Errorf("batch differs from %s (-golden +now); if the change is intended, run with -update:\n%s", golden, diff)
	}
}

// renderBatch writes messages one per block: the message type and flags,
// then the attributes as an indented tree with their nf_tables names. Set
// IDs, which google/nftables numbers per process, are written as their
// order of first appearance in the batch.
func renderBatch(msgs []netlink.Message) string {
	r := &batchRenderer{setIDs: map[string]int{}}
	for _, m := range msgs {
		r.message(m)
	}
	return r.b.String()
}

type batchRenderer struct {
	b      strings.Builder
	setIDs map[string]int
}

var msgNames = map[int]struct{ name, ctx string }{
	unix.NFT_MSG_NEWTABLE:   {"NEWTABLE", "table"},
	unix.NFT_MSG_DELTABLE:   {"DELTABLE", "table"},
	unix.NFT_MSG_NEWCHAIN:   {"NEWCHAIN", "chain"},
	unix.NFT_MSG_DELCHAIN:   {"DELCHAIN", "chain"},
	unix.NFT_MSG_NEWRULE:    {"NEWRULE", "rule"},
	unix.NFT_MSG_DELRULE:    {"DELRULE", "rule"},
	unix.NFT_MSG_NEWSET:     {"NEWSET", "set"},
	unix.NFT_MSG_DELSET:     {"DELSET", "set"},
	unix.NFT_MSG_NEWSETELEM: {"NEWSETELEM", "setelem"},
	unix.NFT_MSG_DELSETELEM: {"DELSETELEM", "setelem"},
}

// attrNames names the attributes of each context: name, and the context
// of its nested attributes ("" for a leaf).
var attrNames = map[string]map[uint16][2]string{
	"table": {unix.NFTA_TABLE_NAME: {"NAME", ""}, unix.NFTA_TABLE_FLAGS: {"FLAGS", ""}},
	"chain": {unix.NFTA_CHAIN_TABLE: {"TABLE", ""}, unix.NFTA_CHAIN_NAME: {"NAME", ""}, unix.NFTA_CHAIN_HOOK: {"HOOK", "hook"},
		unix.NFTA_CHAIN_POLICY: {"POLICY", ""}, unix.NFTA_CHAIN_TYPE: {"TYPE", ""}},
	"hook": {unix.NFTA_HOOK_HOOKNUM: {"HOOKNUM", ""}, unix.NFTA_HOOK_PRIORITY: {"PRIORITY", ""}},
	"set": {unix.NFTA_SET_TABLE: {"TABLE", ""}, unix.NFTA_SET_NAME: {"NAME", ""}, unix.NFTA_SET_FLAGS: {"FLAGS", ""},
		unix.NFTA_SET_KEY_TYPE: {"KEY_TYPE", ""}, unix.NFTA_SET_KEY_LEN: {"KEY_LEN", ""}, unix.NFTA_SET_DATA_TYPE: {"DATA_TYPE", ""},
		unix.NFTA_SET_DATA_LEN: {"DATA_LEN", ""}, unix.NFTA_SET_POLICY: {"POLICY", ""}, unix.NFTA_SET_DESC: {"DESC", "setdesc"},
		unix.NFTA_SET_ID: {"ID", ""}, unix.NFTA_SET_TIMEOUT: {"TIMEOUT", ""}, unix.NFTA_SET_GC_INTERVAL: {"GC_INTERVAL", ""},
		unix.NFTA_SET_USERDATA: {"USERDATA", ""}},
	"setdesc": {unix.NFTA_SET_DESC_SIZE: {"SIZE", ""}, 2: {"CONCAT", "concat"}},
	"concat":  {unix.NFTA_LIST_ELEM: {"ELEM", "field"}},
	"field":   {1: {"LEN", ""}},
	"setelem": {unix.NFTA_SET_ELEM_LIST_TABLE: {"TABLE", ""}, unix.NFTA_SET_ELEM_LIST_SET: {"SET", ""},
		unix.NFTA_SET_ELEM_LIST_ELEMENTS: {"ELEMENTS", "elems"}, unix.NFTA_SET_ELEM_LIST_SET_ID: {"SET_ID", ""}},
	"elem": {unix.NFTA_SET_ELEM_KEY: {"KEY", "data"}, unix.NFTA_SET_ELEM_DATA: {"DATA", "data"}, unix.NFTA_SET_ELEM_FLAGS: {"FLAGS", ""},
		unix.NFTA_SET_ELEM_TIMEOUT: {"TIMEOUT", ""}, unix.NFTA_SET_ELEM_EXPIRATION: {"EXPIRATION", ""}},
	"data":    {unix.NFTA_DATA_VALUE: {"VALUE", ""}, unix.NFTA_DATA_VERDICT: {"VERDICT", "verdict"}},
	"verdict": {unix.NFTA_VERDICT_CODE: {"CODE", ""}, unix.NFTA_VERDICT_CHAIN: {"CHAIN", ""}},
	"rule": {unix.NFTA_RULE_TABLE: {"TABLE", ""}, unix.NFTA_RULE_CHAIN: {"CHAIN", ""}, unix.NFTA_RULE_EXPRESSIONS: {"EXPRESSIONS", "exprs"},
		unix.NFTA_RULE_USERDATA: {"USERDATA", ""}},
	"exprs": {unix.NFTA_LIST_ELEM: {"EXPR", "expr"}},
	"meta":  {unix.NFTA_META_DREG: {"DREG", ""}, unix.NFTA_META_KEY: {"KEY", ""}, unix.NFTA_META_SREG: {"SREG", ""}},
	"cmp":   {unix.NFTA_CMP_SREG: {"SREG", ""}, unix.NFTA_CMP_OP: {"OP", ""}, unix.NFTA_CMP_DATA: {"DATA", "data"}},
	"payload": {unix.NFTA_PAYLOAD_DREG: {"DREG", ""}, unix.NFTA_PAYLOAD_BASE: {"BASE", ""}, unix.NFTA_PAYLOAD_OFFSET: {"OFFSET", ""},
		unix.NFTA_PAYLOAD_LEN: {"LEN", ""}},
	"lookup": {unix.NFTA_LOOKUP_SET: {"SET", ""}, unix.NFTA_LOOKUP_SREG: {"SREG", ""}, unix.NFTA_LOOKUP_SET_ID: {"SET_ID", ""},
		unix.NFTA_LOOKUP_FLAGS: {"FLAGS", ""}},
	"immediate": {unix.NFTA_IMMEDIATE_DREG: {"DREG", ""}, unix.NFTA_IMMEDIATE_DATA: {"DATA", "data"}},
	"bitwise": {unix.NFTA_BITWISE_SREG: {"SREG", ""}, unix.NFTA_BITWISE_DREG: {"DREG", ""}, unix.NFTA_BITWISE_LEN: {"LEN", ""},
		unix.NFTA_BITWISE_MASK: {"MASK", "data"}, unix.NFTA_BITWISE_XOR: {"XOR", "data"}},
	"ct": {unix.NFTA_CT_DREG: {"DREG", ""}, unix.NFTA_CT_KEY: {"KEY", ""}, unix.NFTA_CT_DIRECTION: {"DIRECTION", ""},
		unix.NFTA_CT_SREG: {"SREG", ""}},
	"dynset": {unix.NFTA_DYNSET_SET_NAME: {"SET_NAME", ""}, unix.NFTA_DYNSET_SET_ID: {"SET_ID", ""}, unix.NFTA_DYNSET_OP: {"OP", ""},
		unix.NFTA_DYNSET_SREG_KEY: {"SREG_KEY", ""}, unix.NFTA_DYNSET_SREG_DATA: {"SREG_DATA", ""}, unix.NFTA_DYNSET_TIMEOUT: {"TIMEOUT", ""},
		unix.NFTA_DYNSET_FLAGS: {"FLAGS", ""}},
	"counter": {unix.NFTA_COUNTER_BYTES: {"BYTES", ""}, unix.NFTA_COUNTER_PACKETS: {"PACKETS", ""}},
}

func (r *batchRenderer) message(m netlink.Message) {
	typ := int(m.Header.Type)
	name, ctx := fmt.Sprintf("type %#x", typ), ""
	switch {
	case typ == unix.NFNL_MSG_BATCH_BEGIN:
		name = "BATCH_BEGIN"
	case typ == unix.NFNL_MSG_BATCH_END:
		name = "BATCH_END"
	case typ>>8 == unix.NFNL_SUBSYS_NFTABLES:
		if n, ok := msgNames[typ&0xff]; ok {
			name, ctx = n.name, n.ctx
		}
	}
	fmt.Fprintf(&r.b, "%s flags=%s", name, headerFlags(m.Header.Flags))
	if len(m.Data) < 4 {
		fmt.Fprintf(&r.b, " data=%x\n", m.Data)
		return
	}
	fmt.Fprintf(&r.b, " family=%d res_id=%d\n", m.Data[0], binary.BigEndian.Uint16(m.Data[2:4]))
	r.attrs(ctx, m.Data[4:], 1)
}

func headerFlags(f netlink.HeaderFlags) string {
	var names []string
	for _, n := range []struct {
		bit  netlink.HeaderFlags
		name string
	}{{netlink.Request, "request"}, {netlink.Acknowledge, "ack"}, {netlink.Echo, "echo"},
		{netlink.Replace, "replace"}, {netlink.Excl, "excl"}, {netlink.Create, "create"}, {netlink.Append, "append"}} {
		if f&n.bit != 0 {
			names = append(names, n.name)
			f &^= n.bit
		}
	}
	if f != 0 {
		names = append(names, fmt.Sprintf("%#x", uint16(f)))
	}
	if len(names) == 0 {
		return "0"
	}
	return strings.Join(names, "|")
}

func (r *batchRenderer) attrs(ctx string, data []byte, depth int) {
	attrs, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		fmt.Fprintf(&r.b, "%s!undecodable %x\n", strings.Repeat("  ", depth), data)
		return
	}
	var exprName string
	for _, a := range attrs {
		typ := a.Type &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		indent := strings.Repeat("  ", depth)
		name, sub := fmt.Sprintf("%d", typ), ""
		switch {
		case ctx == "elems":
			name, sub = "ELEM", "elem"
		case ctx == "expr" && typ == unix.NFTA_EXPR_NAME:
			exprName = strings.TrimRight(string(a.Data), "\x00")
			name = "NAME"
		case ctx == "expr" && typ == unix.NFTA_EXPR_DATA:
			name, sub = "DATA", exprName
		default:
			if n, ok := attrNames[ctx][typ]; ok {
				name, sub = n[0], n[1]
			}
		}
		if sub != "" {
			if _, err := netlink.UnmarshalAttributes(a.Data); err == nil {
				fmt.Fprintf(&r.b, "%s%s\n", indent, name)
				r.attrs(sub, a.Data, depth+1)
				continue
			}
		}
		fmt.Fprintf(&r.b, "%s%s %s\n", indent, name, r.value(name, a.Data))
	}
}

// value writes a leaf: a NUL-terminated printable string quoted, a set ID
// other than 0 by its order, a rule fingerprint as its text, anything else in hex.
func (r *batchRenderer) value(name string, d []byte) string {
	if strings.HasSuffix(name, "ID") && len(d) == 4 && binary.BigEndian.Uint32(d) != 0 {
		k := hex.EncodeToString(d)
		if _, ok := r.setIDs[k]; !ok {
			r.setIDs[k] = len(r.setIDs) + 1
		}
		return fmt.Sprintf("set#%d", r.setIDs[k])
	}
	if len(d) > 2 && d[0] == udataRuleFingerprint && int(d[1]) == len(d)-2 && printable(d[2:]) {
		return fmt.Sprintf("fingerprint %q", d[2:])
	}
	if n := len(d); n > 1 && d[n-1] == 0 && printable(d[:n-1]) {
		return fmt.Sprintf("%q", d[:n-1])
	}
	return hex.EncodeToString(d)
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// messages decodes the batch (for tests and the golden rendering).
func (b batch) messages() ([]netlink.Message, error) {
	var out []netlink.Message
	for _, s := range b.segs {
		for len(s) > 0 {
			if len(s) < 16 {
				return nil, errors.New("short message")
			}
			n := int(binary.NativeEndian.Uint32(s))
			if n < 16 || n > len(s) {
				return nil, fmt.Errorf("bad message length %d", n)
			}
			out = append(out, netlink.Message{
				Header: netlink.Header{
					Length:   uint32(n),
					Type:     netlink.HeaderType(binary.NativeEndian.Uint16(s[4:])),
					Flags:    netlink.HeaderFlags(binary.NativeEndian.Uint16(s[6:])),
					Sequence: binary.NativeEndian.Uint32(s[8:]),
					PID:      binary.NativeEndian.Uint32(s[12:]),
				},
				Data: s[16:n],
			})
			s = s[min(align4(n), len(s)):]
		}
	}
	return out, nil
}

// TestValidElementsAsNftables: the valid set's elements that validElements
// encodes itself are byte for byte the messages google/nftables's
// SetAddElements builds for them (3,000 elements: three messages, the
// last one partial; timeouts of several lengths).
func TestValidElementsAsNftables(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := testState()
	s.Valid = nil
	for i := range 3000 {
		s.Valid = append(s.Valid, Element{Port: uint16(22 + i%3*1000), ISN: uint32(i)*2654435761 + 1, Expires: now.Add(time.Duration(i)*time.Millisecond*7 + time.Second)})
	}
	bytesOf := func(w *batchWriter) []byte {
		var out []byte
		for _, seg := range append(w.segs, w.cur) {
			out = append(out, seg...)
		}
		return out
	}
	w := newBatchWriter()
	nc, err := nftables.New(nftables.WithTestDial(w.record))
	if err != nil {
		t.Fatal(err)
	}
	nc.AddTable(Table(s.Table))
	x, _ := ourSet(SetValid)
	valid := x.Set
	valid.Table = Table(s.Table)
	if err := nc.AddSet(valid, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.flush(nc); err != nil {
		t.Fatal(err)
	}
	before := len(bytesOf(w))
	n, err := w.validElements(nc, valid, s, now)
	if err != nil || n != len(s.Valid) {
		t.Fatalf("validElements: %d elements, %v", n, err)
	}
	ours := bytesOf(w)[before:]

	w2 := newBatchWriter()
	nc2, err := nftables.New(nftables.WithTestDial(w2.record))
	if err != nil {
		t.Fatal(err)
	}
	start := len(bytesOf(w2))
	if err := addElements(nc2, valid, Elements(s.Valid, now)); err != nil {
		t.Fatal(err)
	}
	if err := w2.flush(nc2); err != nil {
		t.Fatal(err)
	}
	theirs := bytesOf(w2)[start:]
	if len(ours) != len(theirs) {
		t.Fatalf("validElements wrote %d bytes, SetAddElements %d", len(ours), len(theirs))
	}
	for i := range ours {
		if ours[i] != theirs[i] {
			t.Fatalf("byte %d of %d differs: validElements %#x, SetAddElements %#x", i, len(ours), ours[i], theirs[i])
		}
	}
}

// rotationState is a rotation's state: n knocks on ports 22 and 2222
// that expire 90 s after now, none spent.
func rotationState(n int, seed uint32, now time.Time) State {
	s := testState()
	s.Valid = nil
	s.Knocks = func(yield func(Element) bool) {
		for i := range n {
			if !yield(Element{Port: uint16(22 + i%2*2200), ISN: (uint32(i)+seed)*2654435761 | 1, Expires: now.Add(90 * time.Second)}) {
				return
			}
		}
	}
	return s
}

func drainSpare() {
	for takeSegment() != nil {
	}
}

func renderOf(t *testing.T, b batch) string {
	t.Helper()
	msgs, err := b.messages()
	if err != nil {
		t.Fatal(err)
	}
	return renderBatch(msgs)
}

// TestSpareSegments: a batch written into the segments an earlier, larger
// batch released (filled with 0xff here) is the batch written into fresh
// memory, message for message (set IDs aside, which differ per build), and
// of the same length: nothing of the old contents is sent. And it did
// reuse them.
func TestSpareSegments(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	drainSpare()
	defer drainSpare()
	fresh, err := buildAddBatch(rotationState(50000, 7, now), now)
	if err != nil {
		t.Fatal(err)
	}
	want := renderOf(t, fresh)
	big, err := buildAddBatch(rotationState(200000, 1, now), now)
	if err != nil {
		t.Fatal(err)
	}
	for _, seg := range big.segs {
		for i := range seg[:cap(seg)] {
			seg[:cap(seg)][i] = 0xff
		}
	}
	big.release()
	reused, err := buildAddBatch(rotationState(50000, 7, now), now)
	if err != nil {
		t.Fatal(err)
	}
	if reused.size() != fresh.size() {
		t.Fatalf("batch in reused segments is %d bytes, in fresh ones %d", reused.size(), fresh.size())
	}
	if diff := cmp.Diff(strings.Split(want, "\n"), strings.Split(renderOf(t, reused), "\n")); diff != "" {
		t.Fatalf("batch in reused segments differs from the fresh one (-fresh +reused):\n%s", diff)
	}
	had := map[*byte]bool{}
	for _, seg := range big.segs {
		had[&seg[:1][0]] = true
	}
	n := 0
	for _, seg := range reused.segs {
		if had[&seg[:1][0]] {
			n++
		}
	}
	if n == 0 {
		t.Fatal("no segment was reused")
	}
}

// BenchmarkEncodeRotation encodes a rotation's 80,000 knocks into a batch
// (no kernel), each batch released after use as Apply does, against the
// baseline in the same run: every batch in fresh memory. It prints the
// ratio of their times.
func BenchmarkEncodeRotation(b *testing.B) {
	now := time.Unix(1_000_000, 0)
	s := rotationState(80000, 1, now)
	times := map[bool]time.Duration{}
	for _, reuse := range []bool{false, true} {
		name := "fresh-baseline"
		if reuse {
			name = "reused"
		}
		b.Run(name, func(b *testing.B) {
			drainSpare()
			b.ReportAllocs()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				bt, err := buildAddBatch(s, now)
				if err != nil {
					b.Fatal(err)
				}
				if reuse {
					bt.release()
				}
			}
			times[reuse] = time.Since(start) / time.Duration(b.N)
		})
	}
	drainSpare()
	if times[false] > 0 {
		b.Logf("80,000 knocks: fresh %v, reused %v, ratio %.2f", times[false], times[true], times[true].Seconds()/times[false].Seconds())
	}
}

// Elements returns the valid set's elements at now: one per distinct
// (port, isn), with the latest expiry where two coincide, each timing out
// when its knock leaves the window (rounded down to the millisecond the
// kernel counts in). Elements already expired at now are left out, and so
// are those bound to a source port (valid_sp's).
func Elements(valid []Element, now time.Time) []nftables.SetElement {
	var out []nftables.SetElement
	eachUnique(valid, now, nil, func(sport, port uint16, isn uint32, ttl time.Duration) {
		if sport == 0 {
			out = append(out, nftables.SetElement{Key: elementKey(0, port, isn), Timeout: ttl})
		}
	})
	return out
}
