package server

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/seqknock/seqknock/nftgen"
)

// Add is AddBound for a knock not bound to a source port.
func (s *Spent) Add(port uint16, isn uint32, until time.Time) bool {
	return s.AddBound(0, port, isn, until)
}

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
// atomically, in a directory it creates 0700; a missing file is an error
// wrapping fs.ErrNotExist, another table's state and a damaged file are
// errors naming the file, and "none" keeps nothing.
func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "state.json")
	st, err := LoadState(path, "seqknock")
	if !errors.Is(err, fs.ErrNotExist) || st.Len() != 0 || !st.High.IsZero() {
		t.Fatalf("missing file: %+v %v", st, err)
	}
	t0 := time.UnixMilli(1_800_000_000_123)
	st.High = t0
	st.Before = t0.Add(time.Minute)
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
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode: %v %v", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "sub", ".state-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	back, err := LoadState(path, "seqknock")
	if err != nil {
		t.Fatal(err)
	}
	if !back.High.Equal(t0) || !back.Before.Equal(st.Before) || cmp.Diff(st.List(), back.List()) != "" {
		t.Errorf("round trip: %v %v %v, want %v %v %v", back.High, back.Before, back.List(), t0, st.Before, st.List())
	}
	if _, err := LoadState(path, "other"); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("another table's state: %v", err)
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

// TestStateSaveKeepsOldOnFailure: a save whose rename fails (a non-empty
// directory stands where the file goes) returns an error, leaves no
// temporary file and changes nothing else.
func TestStateSaveKeepsOldOnFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "st")
	path := filepath.Join(dir, "state.json")
	st := &State{Table: "seqknock"}
	st.Add(22, 1, time.Unix(1_800_000_000, 0))
	if err := st.Save(path); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path)
	// A directory where the file is: the rename fails.
	if err := os.Rename(path, path+".keep"); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(path, 0o700)
	os.WriteFile(filepath.Join(path, "x"), nil, 0o600)
	st.Add(22, 2, time.Unix(1_800_000_000, 0))
	if err := st.Save(path); err == nil {
		t.Error("a failed rename reported no error")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".state-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if kept, _ := os.ReadFile(path + ".keep"); string(kept) != string(old) {
		t.Error("the old state changed")
	}
}

// TestCheckStateDir: a state directory open to group or others, or not a
// directory, is refused with one line naming it and the fix.
func TestCheckStateDir(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o755)
	if err := CheckStateDir(filepath.Join(open, "s.json")); err == nil || !strings.Contains(err.Error(), open) || !strings.Contains(err.Error(), "chmod 0700") {
		t.Errorf("a 0755 directory: %v", err)
	}
	link := filepath.Join(base, "link")
	os.Symlink(open, link)
	if err := CheckStateDir(filepath.Join(link, "s.json")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a symlink: %v", err)
	}
	fresh := filepath.Join(base, "new", "dir")
	if err := CheckStateDir(filepath.Join(fresh, "s.json")); err != nil {
		t.Errorf("a new directory: %v", err)
	}
	if err := CheckStateDir(NoState); err != nil {
		t.Error(err)
	}
}

// TestVetState: what the daemon may use of its state at now, with time a
// parameter. A good state is used as it is; a missing, unreadable or
// oversized one is replaced by the fail-closed floor; a High or Before more
// than a window ahead is dropped for the floor, the spent knocks kept.
func TestVetState(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const window = 90 * time.Second
	floor := now.Add(time.Minute)
	good := func() *State {
		st := &State{Table: "seqknock", High: now.Add(-time.Second)}
		st.Add(22, 7, now.Add(time.Minute))
		return st
	}
	if st, why := VetState(good(), nil, now, window, 10, floor); why != "" || !st.Before.IsZero() || st.Len() != 1 || !st.High.Equal(now.Add(-time.Second)) {
		t.Errorf("a good state: %q %+v", why, st)
	}
	behind := good()
	behind.High = now.Add(window) // the clock went back by a window: still trusted
	if st, why := VetState(behind, nil, now, window, 10, floor); why != "" || !st.High.Equal(now.Add(window)) {
		t.Errorf("high a window ahead: %q %+v", why, st)
	}
	for name, c := range map[string]struct {
		st   *State
		err  error
		keep int
	}{
		"missing":     {&State{Table: "seqknock"}, fmt.Errorf("state x: %w", fs.ErrNotExist), 0},
		"garbage":     {&State{Table: "seqknock"}, errors.New("state x: unexpected EOF"), 0},
		"too many":    {func() *State { st := good(); st.Add(22, 8, now.Add(time.Minute)); return st }(), nil, 0},
		"high ahead":  {func() *State { st := good(); st.High = now.Add(365 * 24 * time.Hour); return st }(), nil, 1},
		"floor ahead": {func() *State { st := good(); st.Before = now.Add(365 * 24 * time.Hour); return st }(), nil, 1},
	} {
		st, why := VetState(c.st, c.err, now, window, 1, floor)
		if why == "" || !st.Before.Equal(floor) || st.Len() != c.keep || st.High.After(now) || st.Table != "seqknock" {
			t.Errorf("%s: %q, Before %v, %d knocks, High %v; want the floor %v and %d knocks", name, why, st.Before, st.Len(), st.High, floor, c.keep)
		}
	}
}

// TestFailClosedFloor: the floor is the start of the counter after the
// window's last, so every knock valid at now is below it, and a client
// with a right clock waits under one window; FirstCounter turns it back
// into that counter.
func TestFailClosedFloor(t *testing.T) {
	cfg, err := ParseConfig("x.toml", []byte(goodConfig), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_007, 0)
	floor := FailClosedFloor(cfg, now)
	end := WindowEnd(cfg, now)
	s := Spent{Before: floor}
	if got := s.FirstCounter(cfg.Period); got != end+1 {
		t.Errorf("first counter %d, want %d", got, end+1)
	}
	if wait := floor.Sub(now); wait <= 0 || wait > cfg.WindowLength() {
		t.Errorf("a client waits %v, want (0, %v]", wait, cfg.WindowLength())
	}
	s.Before = floor.Add(-time.Millisecond) // inside counter end: it is spent too
	if got := s.FirstCounter(cfg.Period); got != end+1 {
		t.Errorf("first counter %d, want %d", got, end+1)
	}
	if (&Spent{}).FirstCounter(cfg.Period) != 0 {
		t.Error("no floor: counter 0")
	}
}

// TestSyncAfterLostState: a sync with the floor installs no knock of a
// counter below it (nothing of the window at now), then, a period after
// the floor, the new counters' knocks; a list longer than MaxSpent never
// reaches the kernel (the sync would fail), the floor takes its place.
func TestSyncAfterLostState(t *testing.T) {
	cfg, err := ParseConfig("x.toml", []byte(goodConfig), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_007, 0)
	fk := &fakeKernel{}
	k := fk.kernel()
	spent := Spent{Before: FailClosedFloor(cfg, now)}
	if _, err := SyncKeeping(k, cfg, now, &spent); err != nil {
		t.Fatal(err)
	}
	applied := fk.applied[len(fk.applied)-1]
	if len(applied.Valid) != 0 {
		t.Errorf("%d knocks installed below the floor", len(applied.Valid))
	}
	later := spent.Before.Add(time.Second)
	if _, err := SyncKeeping(k, cfg, later, &spent); err != nil {
		t.Fatal(err)
	}
	applied = fk.applied[len(fk.applied)-1]
	first := spent.FirstCounter(cfg.Period)
	n := 0
	EachKnock(cfg, later, func(k Knock) {
		if k.Counter >= first {
			n++
		}
	})
	if n == 0 || len(applied.Valid) != n {
		t.Errorf("after the floor: %d knocks installed, want the %d of counters from %d", len(applied.Valid), n, first)
	}
	var big Spent
	for i := 0; i <= MaxSpent(cfg, now); i++ {
		big.Add(22, uint32(i), now.Add(time.Minute))
	}
	if _, err := SyncKeeping(k, cfg, now, &big); err != nil {
		t.Fatal(err)
	}
	applied = fk.applied[len(fk.applied)-1]
	if len(applied.Spent) != 0 || len(applied.Valid) != 0 || !big.Before.Equal(FailClosedFloor(cfg, now)) {
		t.Errorf("an oversized list: %d spent and %d valid applied, floor %v", len(applied.Spent), len(applied.Valid), big.Before)
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
	fk := &fakeKernel{used: []nftgen.Element{fromKernel}}
	var spent Spent
	spent.Add(fromState.Port, fromState.ISN, now.Add(time.Minute))
	spent.Add(22, 99, now.Add(-time.Second)) // over: forgotten
	if _, err := SyncKeeping(fk.kernel(), cfg, now, &spent); err != nil {
		t.Fatal(err)
	}
	applied := fk.applied[0]
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

// TestSaveFailureRemovesStaleState: when the daemon cannot bring its state
// file up to date (here its directory was opened to others), it removes
// the old file, which would otherwise be trusted at the next start without
// the knocks spent since.
func TestSaveFailureRemovesStaleState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "st")
	path := filepath.Join(dir, "state.json")
	d := &Daemon{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), state: &State{Table: "seqknock"}, statePath: path}
	d.saveState()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	d.state.Add(22, 1, time.Unix(1_800_000_000, 0))
	d.saveState()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale state is still there: %v", err)
	}
}
