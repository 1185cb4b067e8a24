package gateway

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/nftables/expr"
)

// TestBuild: per destination, one accept per allowed prefix and then a
// drop in pre, one redirect to the listen port in nat; three rules in
// input; every rule tagged with the same fingerprint, and another config
// gets another.
func TestBuild(t *testing.T) {
	c, err := ParseConfig("gw.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	rs := Build(c)
	if rs.Table.Name != DefaultTable || len(rs.Chains) != 3 {
		t.Fatalf("table %s, %d chains", rs.Table.Name, len(rs.Chains))
	}
	verdicts := map[string][]string{}
	for _, r := range rs.Rules {
		last := r.Exprs[len(r.Exprs)-1]
		switch e := last.(type) {
		case *expr.Verdict:
			v := map[expr.VerdictKind]string{expr.VerdictAccept: "accept", expr.VerdictDrop: "drop"}[e.Kind]
			verdicts[r.Chain.Name] = append(verdicts[r.Chain.Name], v)
		case *expr.Redir:
			imm := r.Exprs[len(r.Exprs)-2].(*expr.Immediate)
			if binary.BigEndian.Uint16(imm.Data) != 7100 {
				t.Errorf("redirect to %v, want :7100", imm.Data)
			}
			verdicts[r.Chain.Name] = append(verdicts[r.Chain.Name], "redirect")
		}
	}
	want := map[string][]string{
		chainPre:   {"accept", "accept", "drop", "accept", "drop"},
		chainNAT:   {"redirect", "redirect"},
		chainInput: {"drop", "accept", "drop"},
	}
	for ch, w := range want {
		if got := verdicts[ch]; len(got) != len(w) || fmtList(got) != fmtList(w) {
			t.Errorf("chain %s: %v, want %v", ch, got, w)
		}
	}
	fp := rs.Rules[0].UserData[:len("..seqknock-gw 0123456789abcdef")]
	for i, r := range rs.Rules {
		if !bytes.HasPrefix(r.UserData, fp) {
			t.Errorf("rule %d: comment %q, want the prefix %q", i, r.UserData, fp)
		}
	}
	c.Dests[0].Allow[0] = netip.MustParsePrefix("198.18.9.0/24")
	if other := Build(c); bytes.HasPrefix(other.Rules[0].UserData, fp) {
		t.Error("another config, the same fingerprint")
	}
}

func fmtList(s []string) string {
	var b bytes.Buffer
	for _, x := range s {
		b.WriteString(x + ",")
	}
	return b.String()
}
