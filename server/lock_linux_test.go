//go:build linux

package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/netnstest"
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

// TestLockUserListener: an unprivileged user who listens on a protected
// port (the namespace lets anyone bind port 22) is locked like root's
// service, and removing the filter from their own socket
// (SO_DETACH_FILTER) does not last: the daemon puts it back within a
// LockRecheck.
func TestLockUserListener(t *testing.T) {
	t.Parallel()
	b := NewFailClosedBed(t, 176)
	b.Srv.MustRun("sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0")
	u := netnstest.NewUser(t)
	b.StopService()
	// On SIGUSR1 the user's service removes the filter from its sockets
	// and prints "detached".
	script := strings.Replace(failClosedListener, `print("ready", flush=True)`, `import signal
def detach(*_):
    for s in ls:
        s.setsockopt(socket.SOL_SOCKET, 27, 0)  # SO_DETACH_FILTER
    print("detached", flush=True)
signal.signal(signal.SIGUSR1, detach)
print("ready", flush=True)`, 1)
	cmd := u.Command(b.Srv, "python3", "-c", script, "22")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	startGroup(t, cmd)
	lines := bufio.NewReader(out)
	if l, err := lines.ReadString('\n'); l != "ready\n" {
		t.Fatalf("user's service: %q, %v", l, err)
	}
	ls, err := b.K.Listeners.List(22, nil)
	if err != nil || len(ls) != 2 {
		t.Fatalf("listeners: %v, %v", ls, err)
	}
	waitLocked := func(what string, limit time.Duration) {
		t.Helper()
		start := time.Now()
		for !b.Locked() {
			if time.Since(start) > limit {
				t.Fatalf("%s: not locked after %v:\n%s", what, limit, b.Log)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%s: locked after %v", what, time.Since(start))
	}
	waitLocked("the user's new listener", time.Second)
	if err := b.Atk.Do(func() error {
		c, err := (&net.Dialer{Timeout: 500 * time.Millisecond}).Dial("tcp", net.JoinHostPort(b.AL.A4, "22"))
		if err == nil {
			c.Close()
			return errors.New("a plain connect reached the user's listener")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	b.Signal(syscall.SIGSTOP) // hold the daemon while the user detaches
	cmd.Process.Signal(syscall.SIGUSR1)
	if l, err := lines.ReadString('\n'); l != "detached\n" {
		t.Fatalf("user's service: %q, %v", l, err)
	}
	if b.Locked() {
		t.Fatal("the user's SO_DETACH_FILTER did not remove the filter: the test proves nothing")
	}
	b.Signal(syscall.SIGCONT)
	waitLocked("after the user removed the filter", LockRecheck+500*time.Millisecond)
}

// TestTeardownUnlocks: `seqknockd teardown` removes the lock with the
// table, so the service is reachable as it was before seqknock (a locked
// listener without the table would admit nobody).
func TestTeardownUnlocks(t *testing.T) {
	t.Parallel()
	b := NewFailClosedBed(t, 178)
	b.Signal(syscall.SIGTERM)
	b.daemon.Wait()
	out, err := b.Srv.Command(b.bin, "--config", b.Cfg.Path, "teardown", "--state", b.StatePath()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "unlocked 2 listeners") {
		t.Fatalf("teardown: %v: %s", err, out)
	}
	ls, err := LockedListeners(b.K, b.Cfg)
	if err != nil || len(ls) != 2 || ls[0].Locked || ls[1].Locked {
		t.Errorf("after teardown: %+v, %v", ls, err)
	}
	for _, addr := range []string{b.AL.A4, b.AL.A6} {
		if err := b.Atk.Do(func() error {
			c, err := (&net.Dialer{Timeout: 2 * time.Second}).Dial("tcp", net.JoinHostPort(addr, "22"))
			if err == nil {
				c.Close()
			}
			return err
		}); err != nil {
			t.Errorf("connect to %s after teardown: %v", addr, err)
		}
	}
}

// TestLockSynRetransmission: the client's first two SYN-ACKs are lost,
// and the server retransmits its SYN-ACK only once on its own timer
// (tcp_synack_retries 1), so the connection completes only if a SYN the
// client retransmits after the server's first SYN-ACK reaches the locked
// listener. Conntrack calls that SYN established (it saw the reply): the
// admitted-flow rule must come first and give it the packet mark.
func TestLockSynRetransmission(t *testing.T) {
	t.Parallel()
	b := NewFailClosedBed(t, 184)
	b.Srv.MustRun("sysctl", "-qw", "net.ipv4.tcp_synack_retries=1")
	lossy := b.Cli.Command("nft", "-f", "-")
	lossy.Stdin = strings.NewReader(`table inet lossy {
  set seen1 { type ipv4_addr . inet_service; flags dynamic; }
  set seen2 { type ipv4_addr . inet_service; flags dynamic; }
  chain in {
    type filter hook input priority 0; policy accept;
    tcp sport 22 tcp flags & (syn|ack) == syn|ack ip saddr . tcp dport != @seen1 add @seen1 { ip saddr . tcp dport } counter drop
    tcp sport 22 tcp flags & (syn|ack) == syn|ack ip saddr . tcp dport != @seen2 add @seen2 { ip saddr . tcp dport } counter drop
  }
}`)
	if out, err := lossy.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	d := client.Dialer{Key: aliceKey, Realm: "lab", Slots: 1, SynTimeout: 6 * time.Second, Resolve: literal,
		Reserve: func(string, uint64, int) (int, error) { return 7, nil }}
	start := time.Now()
	var conn *net.TCPConn
	if err := b.Cli.Do(func() (err error) { conn, err = d.Dial(context.Background(), b.CL.A4, 22); return }); err != nil {
		t.Fatalf("knock with two SYN-ACKs lost: %v\n%s", err, b.Cli.MustRun("nft", "list", "ruleset"))
	}
	conn.Close()
	t.Logf("connected after %v", time.Since(start))
	if out := b.Cli.MustRun("nft", "list", "chain", "inet", "lossy", "in"); strings.Count(out, "counter packets 1 ") != 2 {
		t.Fatalf("the two SYN-ACKs were not lost, the test proves nothing:\n%s", out)
	}
}

// TestLockOtherNetns: with no listener of a protected port in the table's
// namespace, status lists one in another namespace with its reason (the
// table and the lock reach neither), and it is no difference.
func TestLockOtherNetns(t *testing.T) {
	netnstest.RequireRoot(t, "python3")
	here, there := netnstest.New(t, "lnh"), netnstest.New(t, "lnt")
	svc := startService(t, there, 2202)
	k := NewKernel(here.FD())
	cfg, err := ParseConfig("x.toml", []byte("[[service]]\nport = 2202\n\n[[user]]\nname = \"a\"\nkey_file = \"k\"\n"), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := LockedListeners(k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, l := range ls {
		if strings.HasSuffix(l.Address, fmt.Sprintf("(network namespace of pid %d)", svc.Process.Pid)) && l.Reason == OtherNetns && !l.Locked {
			found = append(found, l.Address)
		}
	}
	if len(found) != 2 || ls[0].Reason != NoListener {
		t.Errorf("listeners %+v; want no listener here and the two of pid %d there", ls, svc.Process.Pid)
	}
	if d := lockDifferences(ls); len(d) != 0 {
		t.Errorf("differences %q", d)
	}
}

// TestLockReasonNoPidfdAccess: run without CAP_SYS_PTRACE, status cannot
// take the service's listeners from it, and says so as each listener's
// reason (not that no process holds it).
func TestLockReasonNoPidfdAccess(t *testing.T) {
	t.Parallel()
	netnstest.RequireRoot(t, "setpriv")
	b := NewFailClosedBed(t, 186)
	out, _ := b.Srv.Command("setpriv", "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace", b.bin, "--config", b.Cfg.Path, "status").CombinedOutput()
	t.Logf("status without CAP_SYS_PTRACE:\n%s", out)
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "lock:") && strings.Contains(line, "NOT locked") && strings.Contains(line, "no pidfd access") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("status without CAP_SYS_PTRACE: %d listeners with the pidfd reason; want 2", n)
	}
}
