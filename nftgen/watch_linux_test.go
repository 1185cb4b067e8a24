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
