package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/seqknock/seqknock/nftgen"
)

func TestSpentAddPruneList(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	var s Spent
	if !s.Add(22, 7, t0.Add(time.Minute)) || s.Add(22, 7, t0) || !s.Add(22, 7, t0.Add(2*time.Minute)) {
		t.Error("Add: a later expiry wins, an earlier one changes nothing")
	}
	s.Merge([]nftgen.Element{{Port: 2222, ISN: 1, Expires: t0.Add(time.Second)}, {Port: 22, ISN: 3, Expires: t0.Add(time.Hour)}})
	s.Prune(t0.Add(time.Second))
	want := []nftgen.Element{{Port: 22, ISN: 3, Expires: t0.Add(time.Hour)}, {Port: 22, ISN: 7, Expires: t0.Add(2 * time.Minute)}}
	if diff := cmp.Diff(want, s.List()); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
}

// TestStateFile: the state round-trips through its file, written 0600 and
// atomically; a missing file is empty, another table's state is not used,
// a damaged file is an error naming it, and "none" keeps nothing.
func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "state.json")
	st, err := LoadState(path, "seqknock")
	if err != nil || st.Len() != 0 || !st.High.IsZero() {
		t.Fatalf("missing file: %+v %v", st, err)
	}
	t0 := time.UnixMilli(1_800_000_000_123)
	st.High = t0
	st.Add(22, 4000000000, t0.Add(90*time.Second))
	st.Add(2222, 1, t0.Add(time.Second))
	st.AddBound(40000, 22, 4000000000, t0.Add(time.Minute)) // a 48-bit knock: another knock
	if st.Len() != 3 {
		t.Fatalf("%d knocks, want 3", st.Len())
	}
	if err := st.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode: %v %v", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "sub", ".state-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	back, err := LoadState(path, "seqknock")
	if err != nil {
		t.Fatal(err)
	}
	if !back.High.Equal(t0) || cmp.Diff(st.List(), back.List()) != "" {
		t.Errorf("round trip: %v %v, want %v %v", back.High, back.List(), t0, st.List())
	}
	if other, err := LoadState(path, "other"); err != nil || other.Len() != 0 {
		t.Errorf("another table's state used: %+v %v", other, err)
	}
	os.WriteFile(path, []byte("{not json"), 0o600)
	if _, err := LoadState(path, "seqknock"); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("damaged file: %v", err)
	}
	if err := st.Save(NoState); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(NoState); err == nil {
		t.Error(`"none" wrote a file`)
	}
}

// TestSyncKeepingLeavesSpentOut: a sync puts the spent knocks (the state's
// and the live used set's) into used and leaves them out of valid.
func TestSyncKeepingLeavesSpentOut(t *testing.T) {
	cfg, err := ParseConfig("x.toml", []byte(goodConfig), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	all := Desired(cfg, now).Valid
	fromState, fromKernel := all[0], all[5]
	var applied nftgen.State
	k := Kernel{
		Apply: func(s nftgen.State, _ time.Time) (nftgen.Result, error) {
			s.Valid, s.Knocks = s.ValidList(), nil
			applied = s
			return nftgen.Result{}, nil
		},
		Spent: func(string, time.Time) ([]nftgen.Element, error) { return []nftgen.Element{fromKernel}, nil },
	}
	var spent Spent
	spent.Add(fromState.Port, fromState.ISN, now.Add(time.Minute))
	spent.Add(22, 99, now.Add(-time.Second)) // over: forgotten
	if _, err := SyncKeeping(k, cfg, now, &spent); err != nil {
		t.Fatal(err)
	}
	if len(applied.Spent) != 2 || spent.Len() != 2 {
		t.Fatalf("spent applied %v, kept %d", applied.Spent, spent.Len())
	}
	for _, e := range applied.Spent {
		if e.ISN == 99 {
			t.Error("an expired spent knock was applied")
		}
	}
	if len(applied.Valid) != len(all) {
		t.Errorf("valid changed: %d, want %d (nftgen leaves the spent out)", len(applied.Valid), len(all))
	}
}
