//go:build linux

package nftgen

import (
	"context"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// bulkState is testState with n valid knocks on port 22, enough from a few
// thousand on for send to leave the notification group (quietMin).
func bulkState(n int, now time.Time) State {
	s := testState()
	s.Valid = nil
	s.Knocks = func(yield func(Element) bool) {
		for i := uint32(1); i <= uint32(n); i++ {
			if !yield(Element{Port: 22, ISN: i, Expires: now.Add(time.Minute)}) {
				return
			}
		}
	}
	return s
}

// TestQuietSendReportsCommitInGap: a large batch goes out while the watch
// is out of the notification group; a foreign commit made in that gap is
// not announced to the watch, and is reported all the same (the
// generation id moved by two). Without the generation check the change
// would go unseen until the next one.
func TestQuietSendReportsCommitInGap(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "qgap")
	c := &Conn{NetNS: ns.FD()}
	now := time.Unix(1_000_000, 0)
	s := bulkState(20_000, now)
	if res, err := c.Apply(s, now); err != nil {
		t.Fatal(err)
	} else if res.Bytes < quietMin {
		t.Fatalf("batch of %d bytes: under quietMin, the test does not test the gap", res.Bytes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.Watch(ctx, "seqknock")
	if err != nil {
		t.Fatal(err)
	}
	waitWatching(t, c)
	var foreign string
	c.inGap = func() {
		if foreign != "" {
			ns.MustRun("nft", foreign)
		}
	}
	gapSend := func(cmd string) error {
		foreign = cmd
		_, err := c.Apply(s, now)
		return err
	}
	if err := gapSend(""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("own quiet send reported as a foreign change")
	case <-time.After(300 * time.Millisecond):
	}
	if err := gapSend("delete element inet seqknock valid { 22 . 7 }"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("a foreign commit made while the watch was out of the group was not reported")
	}
	// The watch is back in the group: a later change is announced.
	ns.MustRun("nft", "add element inet seqknock ports { 9 }")
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("foreign change after the quiet send not reported")
	}
}

// waitWatching waits until c's Watch has registered its socket.
func waitWatching(t *testing.T, c *Conn) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(c.watch.list()) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watch did not start")
		}
	}
}

// TestGenerationStillWhileElementsExpire: the kernel's removal of expired
// elements commits no transaction, so quietly's generation check does not
// take it for a foreign change.
func TestGenerationStillWhileElementsExpire(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "qgen")
	c := &Conn{NetNS: ns.FD()}
	now := time.Now()
	s := testState()
	s.Valid = []Element{{Port: 22, ISN: 1, Expires: now.Add(time.Second)}, {Port: 22, ISN: 2, Expires: now.Add(1500 * time.Millisecond)}}
	if _, err := c.Apply(s, now); err != nil {
		t.Fatal(err)
	}
	gen := func() uint32 {
		c.sendMu.Lock()
		defer c.sendMu.Unlock()
		g, err := c.genLocked()
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	before := gen()
	time.Sleep(4 * time.Second) // the elements expire, and the set's collector runs (every second)
	if after := gen(); after != before {
		t.Errorf("generation %d -> %d with no transaction", before, after)
	}
	if _, err := c.Apply(s, now); err != nil {
		t.Fatal(err)
	}
	if after := gen(); after != nextGen(before) {
		t.Errorf("generation %d -> %d after one apply, want %d", before, after, nextGen(before))
	}
}
