//go:build linux

package nlwatch

import (
	"context"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"golang.org/x/sys/unix"
)

// TestRun: signals coalesce (one pending at most), the channel closes when
// the loop returns, and ending ctx closes the socket, which ends a loop
// blocked reading it.
func TestRun(t *testing.T) {
	netnstest.RequireRoot(t)
	conn, err := Join(0, unix.NFNLGRP_CONNTRACK_DESTROY)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proceed := make(chan struct{})
	out := Run(ctx, conn, func(notify func()) {
		notify()
		notify()
		notify()
		close(proceed)
		for {
			if _, err := conn.Receive(); err != nil {
				return
			}
		}
	})
	<-proceed
	if _, ok := <-out; !ok {
		t.Fatal("closed before the first signal")
	}
	select {
	case _, ok := <-out:
		t.Fatalf("a second signal pending (open %v): they did not coalesce", ok)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case _, ok := <-out:
		if ok {
			t.Fatal("a signal after cancel, want the channel closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not end when ctx ended")
	}
}

// TestJoinRefusesUnknownGroup: a group the kernel does not have is an
// error naming it, and no socket is left open.
func TestJoinRefusesUnknownGroup(t *testing.T) {
	netnstest.RequireRoot(t)
	if conn, err := Join(0, 1000); err == nil {
		conn.Close()
		t.Fatal("joined group 1000")
	} else if want := "join group 1000: "; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Errorf("error %q, want it to start with %q", err, want)
	}
}
