package server

import (
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/nftgen"
)

// TestDaemonRotationAddsOnlyNewCounter: while the daemon watches the table,
// a period boundary adds the new counter's knocks and nothing else (no
// whole Apply); a foreign change makes the next sync whole, and the
// boundary after it adds only again. Without a watch every sync is whole.
func TestDaemonRotationAddsOnlyNewCounter(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0).Add(time.Second)
	cfg, err := ParseConfig("x.toml", []byte(strings.Replace(goodConfig, `period = "2s"`, `period = "60s"`, 1)), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	keys := func(s nftgen.State) map[nftgen.Key]bool {
		m := map[nftgen.Key]bool{}
		for _, e := range s.ValidList() {
			m[nftgen.Key{Port: e.Port, ISN: e.ISN}] = true
		}
		return m
	}
	for _, watched := range []bool{true, false} {
		clock := newFakeClock(t0)
		sk := &scriptedKernel{clock: clock}
		foreign := make(chan struct{}, 1)
		if watched {
			sk.foreign = foreign
		}
		nAdded := func() int { sk.mu.Lock(); defer sk.mu.Unlock(); return len(sk.added) }
		_, stop := startDaemon(t, clock, sk.kernel(), &notes{}, 0, "60s")
		waitFor(t, "first sync", func() bool { return sk.count() == 1 })
		clock.run(60*time.Second, 100*time.Millisecond)
		if !watched {
			waitFor(t, "second whole sync", func() bool { return sk.count() == 2 })
			if n := nAdded(); n != 0 {
				t.Errorf("unwatched: %d rotations, want every sync whole", n)
			}
			stop()
			continue
		}
		waitFor(t, "rotation", func() bool { return nAdded() == 1 })
		if n := sk.count(); n != 1 {
			t.Errorf("%d whole syncs after the boundary, want 1 (the start)", n)
		}
		t1 := t0.Add(59 * time.Second)
		before, after := Desired(cfg, t0), Desired(cfg, t1)
		want := map[nftgen.Key]bool{}
		old := keys(before)
		for k := range keys(after) {
			if !old[k] {
				want[k] = true
			}
		}
		sk.mu.Lock()
		got := keys(sk.added[0])
		kc := sk.added[0].KnockCount
		sk.mu.Unlock()
		if len(got) != len(want) || len(want) == 0 {
			t.Errorf("rotation added %d knocks, want the new counter's %d", len(got), len(want))
		}
		for k := range want {
			if !got[k] {
				t.Errorf("rotation lacks %v", k)
			}
		}
		if kc != len(after.Valid) {
			t.Errorf("rotation's KnockCount %d, want the window's %d", kc, len(after.Valid))
		}
		foreign <- struct{}{}
		waitFor(t, "repair, whole", func() bool { return sk.count() == 2 })
		clock.run(60*time.Second, 100*time.Millisecond)
		waitFor(t, "second rotation", func() bool { return nAdded() == 2 })
		if n := sk.count(); n != 2 {
			t.Errorf("%d whole syncs, want 2 (start, repair)", n)
		}
		stop()
	}
}
