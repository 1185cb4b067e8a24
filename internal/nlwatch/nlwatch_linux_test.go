//go:build linux

package nlwatch

import (
	"runtime"

	"context"
	"github.com/mdlayher/netlink"
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

// TestRunReleasesOnLoopEnd: when the loop returns before ctx ends (a read
// error, and the caller watches again with the same ctx), the socket is
// closed and its goroutine ends then, not when ctx ends: a restarted watch
// leaks neither a socket joined to the group nor a goroutine.
func TestRunReleasesOnLoopEnd(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := runtime.NumGoroutine()
	const rounds = 20
	conns := make([]*netlink.Conn, 0, rounds)
	for range rounds {
		conn, err := Join(0, unix.NFNLGRP_CONNTRACK_DESTROY)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		out := Run(ctx, conn, func(func()) {})
		for range out {
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine() - before; n > 0 {
		t.Errorf("%d goroutines left after %d watches ended (ctx still live)", n, rounds)
	}
	for i, conn := range conns {
		if err := conn.SetReadDeadline(time.Now()); err == nil {
			t.Fatalf("watch %d: socket still open after its loop returned", i)
		}
	}
}
