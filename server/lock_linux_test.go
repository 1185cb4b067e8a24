//go:build linux

package server

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// failClosedReps is how many times each event is repeated.
const failClosedReps = 20

// foreignTable is a stale or hand-written nftables.conf: it flushes the
// ruleset and defines a table of the daemon's name that admits everything.
const foreignTable = "flush ruleset\ntable inet seqknock {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"

// TestLockFailClosed: whatever removes or replaces the table, with the
// daemon running, killed or stopped, no plain connect reaches the service
// (the listeners' socket filter drops every SYN the table did not mark),
// and a session established before stays up. Once the daemon can write
// its table again (at once when it runs; after a restart when it was
// killed; on SIGCONT when it was stopped), knocked connects work. The
// four events run in parallel, each in its own namespaces.
func TestLockFailClosed(t *testing.T) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, tc := range []struct {
		name, back     string
		event, recover func(b *FailClosedBed, rep int)
	}{
		{"flush with the daemon running", "the flush",
			func(b *FailClosedBed, rep int) {
				b.Nft("", "flush", "ruleset")
				// The daemon can write its table at once: time
				// its repair while the flood goes on.
				back := make(chan time.Duration, 1)
				b.back = back
				go func() { d, _ := b.WaitInForce(time.Second); back <- d }()
			},
			func(b *FailClosedBed, rep int) {
				took := <-b.back
				b.worstBack = max(b.worstBack, took)
				if took > 100*time.Millisecond {
					b.t.Errorf("rep %d: the table was back %v after the flush; want at most 100ms", rep, took)
				}
				b.knockAfter(time.Now(), "the flush", 0)
			}},
		{"flush with the daemon killed", "the restart (process start included)",
			func(b *FailClosedBed, rep int) { b.Signal(syscall.SIGKILL); b.Nft("", "flush", "ruleset") },
			func(b *FailClosedBed, rep int) {
				start := time.Now()
				b.StartDaemon()
				b.knockAfter(start, "the restart", 0)
			}},
		{"flush with the daemon stopped", "SIGCONT",
			func(b *FailClosedBed, rep int) { b.Signal(syscall.SIGSTOP); b.Nft("", "flush", "ruleset") },
			func(b *FailClosedBed, rep int) {
				b.Signal(syscall.SIGCONT)
				b.knockAfter(time.Now(), "SIGCONT", 100*time.Millisecond)
			}},
		// Replacing a foreign table is not this test's to show: the
		// daemon is restarted on a clean ruleset after each repetition.
		{"foreign table from nft -f", "the restart on a clean ruleset (process start included)",
			func(b *FailClosedBed, rep int) { b.Nft(foreignTable) },
			func(b *FailClosedBed, rep int) {
				b.Signal(syscall.SIGKILL)
				b.Nft("", "flush", "ruleset")
				start := time.Now()
				b.StartDaemon()
				b.knockAfter(start, "the restart", 0)
			}},
	} {
		// Run as goroutines, not t.Parallel: go test runs only
		// GOMAXPROCS parallel tests at once, and these wait on the
		// network, not the CPU.
		wg.Add(1)
		go t.Run(tc.name, func(t *testing.T) {
			defer wg.Done()
			b := NewFailClosedBed(t, 160+2*i)
			in, lost := b.Event(tc.name, failClosedReps,
				func(rep int) { tc.event(b, rep) }, func(rep int) { tc.recover(b, rep) })
			t.Logf("%s: the table was back and the listeners locked at most %v after %s", tc.name, b.worstBack, tc.back)
			if in != 0 || lost != 0 {
				t.Errorf("%s: %d plain connects got in, %d sessions lost, over %d repetitions; want 0 and 0\n%s", tc.name, in, lost, failClosedReps, b.Log)
			}
		})
	}
}

// knockAfter waits until the table is current and the listeners locked
// (within limit of since, when limit is not 0), then knocks once, over
// IPv4 and IPv6: the knock must get in with its first SYN.
func (b *FailClosedBed) knockAfter(since time.Time, what string, limit time.Duration) {
	b.t.Helper()
	if _, ok := b.WaitInForce(5 * time.Second); !ok {
		b.t.Fatalf("the table is not back 5s after %s:\n%s", what, b.Log)
	}
	took := time.Since(since)
	b.worstBack = max(b.worstBack, took)
	if limit != 0 && took > limit {
		b.t.Errorf("the table took %v after %s to be back; want at most %v", took, what, limit)
	}
	for _, v6 := range []bool{false, true} {
		s, err := b.Knock(v6)
		if err != nil {
			b.t.Fatalf("knock after %s (v6 %v): %v\n%s", what, v6, err, b.Log)
		}
		s.Close()
	}
}

// TestLockRestartedListener: a service restarted under a running daemon
// gets its new listeners (IPv4 and IPv6) locked within 100 ms; then a
// plain connect times out (no answer, no reset) and a knock gets in.
func TestLockRestartedListener(t *testing.T) {
	t.Parallel()
	b := NewFailClosedBed(t, 170)
	var worst time.Duration
	for i := 0; i < 5; i++ {
		b.StopService()
		b.StartService() // returns once it listens
		start := time.Now()
		for !b.Locked() {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("the restarted service's listeners are not locked after 2s:\n%s", b.Log)
			}
			time.Sleep(time.Millisecond)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("a restarted listener was locked within %v (worst of 5)", worst)
	if worst > 100*time.Millisecond {
		t.Errorf("locking a restarted listener took %v; want at most 100ms", worst)
	}
	// With the table gone, the lock alone keeps a plain connect out.
	b.Signal(syscall.SIGKILL)
	b.Nft("", "flush", "ruleset")
	for _, addr := range []string{b.AL.A4, b.AL.A6} {
		err := b.Atk.Do(func() error {
			c, err := (&net.Dialer{Timeout: 700 * time.Millisecond}).Dial("tcp", net.JoinHostPort(addr, "22"))
			if err == nil {
				c.Close()
				return errors.New("a plain connect got in")
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return err // a reset would say the port is there
			}
			return nil
		})
		if err != nil {
			t.Errorf("plain connect to %s with the table gone: %v", addr, err)
		}
	}
	b.StartDaemon()
	for _, v6 := range []bool{false, true} {
		s, err := b.Knock(v6)
		if err != nil {
			t.Fatalf("knock (v6 %v): %v", v6, err)
		}
		if err := s.Ping("after"); err != nil {
			t.Errorf("knocked session: %v", err)
		}
		s.Close()
	}
}
