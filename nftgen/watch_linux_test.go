//go:build linux

package nftgen

import (
	"context"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestWatch: Watch reports every change to our table made by someone else
// (nft, another socket) and none of this Conn's own applies, nor changes to
// other tables.
func TestWatch(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "watch")
	c := &Conn{NetNS: ns.FD()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.Watch(ctx, "seqknock")
	if err != nil {
		t.Fatal(err)
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case <-ch:
			t.Fatalf("%s: reported", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
	seen := func(what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: not reported", what)
		}
	}
	s := testState()
	now := time.Unix(1_000_000, 0)
	for i := 0; i < 3; i++ {
		if _, err := c.Apply(s, now); err != nil {
			t.Fatal(err)
		}
	}
	quiet("own applies")
	ns.MustRun("nft", "add table inet other; add chain inet other c; add rule inet other c accept")
	quiet("another table")
	for _, tc := range []struct{ name, cmd string }{
		{"flush set", "flush set inet seqknock valid"},
		{"element added", "add element inet seqknock ports { 9 }"},
		{"rule inserted", "insert rule inet seqknock knock accept"},
		{"chain flushed", "flush chain inet seqknock input"},
		{"table deleted", "delete table inet seqknock"},
		{"ruleset flushed", "flush ruleset"},
	} {
		if _, err := c.Apply(s, now); err != nil {
			t.Fatal(err)
		}
		quiet(tc.name + " (before)")
		ns.MustRun("nft", tc.cmd)
		seen(tc.name)
	}
	// Another Conn (another socket, as another process would have) counts
	// as someone else.
	other := &Conn{NetNS: ns.FD()}
	if _, err := other.Apply(s, now); err != nil {
		t.Fatal(err)
	}
	seen("another Conn's apply")
}

// TestWatchOwnBulkQuiet: our own apply of 100,000 elements announces more
// than the watch socket's buffer holds; the kernel-side filter drops those
// announcements, so no overflow is reported as a foreign change (before the
// filter, every large sync triggered a repair, which overflowed again),
// while a foreign change after it is still seen.
func TestWatchOwnBulkQuiet(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "wbulk")
	c := &Conn{NetNS: ns.FD()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.Watch(ctx, "seqknock")
	if err != nil {
		t.Fatal(err)
	}
	s := testState()
	now := time.Unix(1_000_000, 0)
	s.Valid = nil
	s.Knocks = func(yield func(Element) bool) {
		for i := uint32(1); i <= 100_000; i++ {
			if !yield(Element{Port: 22, ISN: i, Expires: now.Add(time.Minute)}) {
				return
			}
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := c.Apply(s, now); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-ch:
		t.Fatal("own bulk applies reported as a foreign change")
	case <-time.After(500 * time.Millisecond):
	}
	ns.MustRun("nft", "add element inet seqknock ports { 9 }")
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("foreign change after the bulk not reported")
	}
}
