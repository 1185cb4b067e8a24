//go:build linux

package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
	"golang.org/x/sys/unix"
)

// ours says whether the live table is the daemon's again, whole: its
// rules, knocks installed, and every key of spent in its used set.
func ours(k Kernel, spent []nftgen.Key) bool {
	live, err := k.Table.Read("seqknock")
	if err != nil || !live.Exists || live.Foreign != "" || !live.RulesCurrent || live.ValidCount == 0 {
		return false
	}
	have := map[nftgen.Key]bool{}
	for _, u := range live.UsedKeys {
		have[u] = true
	}
	for _, s := range spent {
		if !have[s] {
			return false
		}
	}
	return true
}

// prober sends unknocked SYNs from the client in a tight loop (probeOpen,
// one a millisecond, each from a source of its own) until stop, which
// returns how many got a SYN-ACK and how many were sent.
func (f *inForce) prober(t *testing.T) (stop func() (in, sent int)) {
	t.Helper()
	done := make(chan struct{})
	res := make(chan []probe, 1)
	errc := make(chan error, 1)
	go func() {
		p, err := probeOpen(f.cli, f.nextProbe, f.cl.A4, 22, done)
		res <- p
		errc <- err
	}()
	return func() (int, int) {
		close(done)
		probes := <-res
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		in := 0
		for _, p := range probes {
			if p.answered {
				in++
			}
		}
		return in, len(probes)
	}
}

// drainAccepted closes every connection the test's listener on port 22
// accepts, counting them, until the test ends.
func (f *inForce) drainAccepted(t *testing.T) *atomic.Int32 {
	var n atomic.Int32
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case c := <-f.accepted:
				n.Add(1)
				c.Close()
			case <-stop:
				return
			}
		}
	}()
	return &n
}

// lendListeners hands the server's listening sockets to a child process
// that holds them (and does nothing else) until the test ends, and waits
// until the daemon has locked those of port 22 and 2222: the daemon takes
// a listener from the process that holds it, and never from its own
// process, which the test's is. The test's goroutines still accept on
// them.
func (f *inForce) lendListeners(t *testing.T) {
	t.Helper()
	var files []*os.File
	for _, ln := range f.listeners {
		fl, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fl)
	}
	holder := exec.Command("sleep", "3600")
	holder.ExtraFiles = files
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	for _, fl := range files {
		fl.Close()
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	// Handing a socket over puts its (shared) file description in
	// blocking mode; put it back before any connection comes, or the
	// accepting goroutines would block in accept and Close would wait.
	for _, ln := range f.listeners {
		raw, err := ln.(*net.TCPListener).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := raw.Control(func(fd uintptr) { serr = unix.SetNonblock(int(fd), true) }); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
	}
	waitForLong(t, "the listeners of ports 22 and 2222 locked", 5*time.Second, func() bool {
		ls, err := LockedListeners(f.k, f.cfg)
		locked := 0
		for _, l := range ls {
			if l.Locked {
				locked++
			}
		}
		return err == nil && locked == 2
	})
}

// knockUntil dials from the client with the knock of slot, one SYN of
// 20 ms at a time (a dropped knock is not spent), until one is admitted;
// it returns how long that took.
func (f *inForce) knockUntil(t *testing.T, slot int, limit time.Duration) time.Duration {
	t.Helper()
	d := client.Dialer{Key: aliceKey, Realm: "lab", Resolve: literal, Reserve: fixedSlot(slot), Slots: 1, SynTimeout: 20 * time.Millisecond}
	start := time.Now()
	for {
		var conn net.Conn
		err := f.cli.Do(func() (err error) { conn, err = d.Dial(context.Background(), f.cl.A4, 22); return })
		if err == nil {
			conn.Close()
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("slot %d: no knocked connect within %v: %v", slot, limit, err)
		}
	}
}

// TestForeignTableReplacedAtOnce: `nft -f` of a file that flushes the
// ruleset and defines its own table inet seqknock, 20 times under a
// running daemon: each time the daemon replaces it whole, a knocked
// connect works again within 100 ms, the knock spent before stays spent
// and an established session survives; unknocked SYNs sent in a tight
// loop through all of it and for 2 s after get in 0 times.
func TestForeignTableReplacedAtOnce(t *testing.T) {
	f := newInForce(t, 82, "slots = 32\n"+fmt.Sprintf(tbConfig, "30s", 1))
	// The replay at the end knocks with the counter of this session's
	// knock, wherever the clock is by then: not within a second of a
	// period boundary, so the session's knock has the counter of at.
	if rest := time.Until(totp.NextBoundary(time.Now(), 30*time.Second)); rest < time.Second {
		time.Sleep(rest + 10*time.Millisecond)
	}
	at := time.Now()
	conn, srv := f.knockedSession(t)
	live, err := f.k.Table.Read("seqknock")
	if err != nil || len(live.UsedKeys) != 1 {
		t.Fatalf("used set after the knocked session: %+v, %v", live, err)
	}
	spent := live.UsedKeys
	file := filepath.Join(f.dir, "foreign.conf")
	if err := os.WriteFile(file, []byte(foreignTable), 0o600); err != nil {
		t.Fatal(err)
	}
	f.lendListeners(t)
	accepted := f.drainAccepted(t)
	stopProbes := f.prober(t)
	const reps = 20
	var worst time.Duration
	for i := range reps {
		time.Sleep(100 * time.Millisecond)
		load := f.srv.Command("nft", "-f", file)
		if out, err := load.CombinedOutput(); err != nil {
			t.Fatalf("nft -f: %v: %s", err, out)
		}
		worst = max(worst, f.knockUntil(t, i+1, 5*time.Second))
		waitForLong(t, "the table ours, the spent knock in used", 5*time.Second, func() bool { return ours(f.k, spent) })
		pingBoth(t, conn, srv, fmt.Sprintf("repetition %d", i))
	}
	time.Sleep(2 * time.Second)
	in, sent := stopProbes()
	t.Logf("over %d foreign tables: a knocked connect worked again within %v at worst of nft -f returning; %d of %d unknocked SYNs got in", reps, worst, in, sent)
	if in != 0 {
		t.Errorf("%d unknocked SYNs got in", in)
	}
	if worst > 100*time.Millisecond {
		t.Errorf("a knocked connect waited %v for the table", worst)
	}
	if n := strings.Count(f.log.String(), "replaced_foreign_table=true"); n < reps {
		t.Errorf("%d replacements logged, want %d", n, reps)
	}
	if n := int(accepted.Load()); n != reps {
		t.Errorf("%d connections accepted, want the %d knocked ones", n, reps)
	}
	// The knock spent before the replacements is refused.
	replay := client.Dialer{Key: aliceKey, Realm: "lab", Resolve: literal, Reserve: fixedSlot(0), Slots: 1, SynTimeout: 300 * time.Millisecond,
		Now: func() time.Time { return at }}
	if err := f.cli.Do(func() error {
		c, err := replay.Dial(context.Background(), f.cl.A4, 22)
		if err == nil {
			c.Close()
		}
		return err
	}); err == nil {
		t.Error("the knock spent before the replacements was admitted again")
	}
}

// TestRemovalDuringBackoffRepairedAtOnce: while syncs fail and the daemon
// waits to retry, someone removes the table; once the kernel takes a batch
// again the removal is repaired at once, not at the next retry. Unknocked
// SYNs get in 0 times throughout and for 2 s after.
func TestRemovalDuringBackoffRepairedAtOnce(t *testing.T) {
	f := newInForce(t, 86, fmt.Sprintf(tbConfig, "30s", 1))
	f.lendListeners(t)
	f.drainAccepted(t)
	stopProbes := f.prober(t)
	f.failNext.Store(1 << 20)
	// A foreign change starts the failures: every repair fails.
	f.srv.MustRun("nft", "flush", "set", "inet", "seqknock", "valid")
	const failures = 8 // the backoff is well past its first steps
	waitForLong(t, "failed repairs", 10*time.Second, func() bool { return strings.Count(f.log.String(), "sync failed") >= failures })
	f.failNext.Store(0)
	start := time.Now()
	f.srv.MustRun("nft", "delete", "table", "inet", "seqknock")
	waitForLong(t, "the repair", 10*time.Second, func() bool { return ours(f.k, nil) })
	took := time.Since(start)
	time.Sleep(2 * time.Second)
	in, sent := stopProbes()
	t.Logf("removed during a backoff after %d failed syncs: repaired %v after the nft command started; %d of %d unknocked SYNs got in", failures, took, in, sent)
	if took > time.Second {
		t.Errorf("repaired after %v, want within 1 s:\n%s", took, f.log)
	}
	if in != 0 {
		t.Errorf("%d unknocked SYNs got in\n%s", in, f.log)
	}
}

// waitForLong is waitFor with a deadline of d.
func waitForLong(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// startBin runs `seqknockd --config cfg run` in ns and returns it with its
// log; it is killed when the test ends.
func startBin(t *testing.T, ns *netnstest.NS, bin, cfg string, env ...string) (*exec.Cmd, *netnstest.Buffer) {
	t.Helper()
	log := &netnstest.Buffer{}
	d := ns.Command(bin, "--config", cfg, "run")
	d.Env = append(os.Environ(), env...)
	d.Stderr = log
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.ProcessState == nil {
			d.Process.Kill()
			d.Wait()
		}
	})
	waitForLong(t, "the first sync", 10*time.Second, func() bool { return strings.Contains(log.String(), "msg=sync") })
	return d, log
}

// cpuTicks is the user and system time pid used, in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// TestSecondDaemonRefused: a second `seqknockd run` for the same table in
// the same network namespace exits non-zero at once with one line naming
// the first one's pid; the first one's table and CPU are unchanged. A
// daemon in another namespace, sharing the runtime directory, runs.
func TestSecondDaemonRefused(t *testing.T) {
	ns, bin, dir, cfg, _ := binBed(t, "sone")
	runDir := filepath.Join(dir, "run")
	env := "SEQKNOCKD_RUNTIME_DIR=" + runDir
	first, log := startBin(t, ns, bin, cfg, env)
	listing := func() string {
		return reExpires.ReplaceAllString(ns.MustRun("nft", "-t", "list", "table", "inet", "seqknock"), "")
	}
	before, ticks := listing(), cpuTicks(t, first.Process.Pid)
	lines := strings.Count(log.String(), "\n")

	second := ns.Command(bin, "--config", cfg, "run")
	second.Env = append(os.Environ(), env)
	out := &netnstest.Buffer{}
	second.Stderr, second.Stdout = out, out
	start := time.Now()
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- second.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("the second daemon exited 0: %s", out)
		}
		t.Logf("the second daemon exited after %v: %s", time.Since(start), strings.TrimSpace(out.String()))
	case <-time.After(2 * time.Second):
		second.Process.Kill()
		<-done
		t.Fatalf("the second daemon still ran after 2 s; the first one's log:\n%s", log)
	}
	msg := strings.TrimSpace(out.String())
	if want := "pid " + strconv.Itoa(first.Process.Pid); !strings.Contains(msg, want) || strings.Contains(msg, "\n") || !strings.Contains(msg, "already running") {
		t.Errorf("second daemon said %q, want one line naming %q", msg, want)
	}
	time.Sleep(500 * time.Millisecond)
	if after := listing(); after != before && !strings.Contains(log.String(), "why=rotate") {
		t.Errorf("the first daemon's table changed:\n%s\nwas:\n%s", after, before)
	}
	if used := cpuTicks(t, first.Process.Pid) - ticks; used > 10 {
		t.Errorf("the first daemon used %d clock ticks of CPU meanwhile", used)
	}
	if got := strings.Count(log.String(), "\n"); got != lines || first.ProcessState != nil {
		t.Errorf("the first daemon logged %d lines or exited meanwhile:\n%s", got-lines, log)
	}

	// Another namespace is another daemon's: the same table name and
	// runtime directory do not stop it.
	other := netnstest.New(t, "stwo")
	d2, _ := startBin(t, other, bin, cfg, env)
	d2.Process.Signal(syscall.SIGTERM)
	if err := d2.Wait(); err != nil {
		t.Errorf("the other namespace's daemon: %v", err)
	}
	// Once the first has stopped, a new one starts.
	first.Process.Signal(syscall.SIGTERM)
	if err := first.Wait(); err != nil {
		t.Errorf("first daemon exit: %v", err)
	}
	d3, _ := startBin(t, ns, bin, cfg, env)
	d3.Process.Signal(syscall.SIGTERM)
	d3.Wait()
}

// TestFIFOKeyDoesNotBlock: a key file replaced by a FIFO, then SIGHUP: the
// reload fails at once with one line naming the file and the daemon keeps
// its config; a table removal after it is repaired at once, and unknocked
// SYNs get in 0 times throughout and for 2 s after. check-config on that
// config fails at once too.
func TestFIFOKeyDoesNotBlock(t *testing.T) {
	bin := netnstest.Build(t, "server/cmd/seqknockd")
	f := &inForce{testbed: newTestbed(t, 88)}
	f.cfg = f.config(t, fmt.Sprintf(tbConfig, "30s", 1))
	reload := make(chan os.Signal, 1)
	t.Cleanup(func() {
		if f.stop != nil {
			f.stop()
		}
	})
	f.start(t, daemonOpts{reload: reload})
	f.lendListeners(t)
	f.drainAccepted(t)
	stopProbes := f.prober(t)
	key := filepath.Join(f.dir, "alice.key")
	os.Remove(key)
	if err := syscall.Mkfifo(key, 0o600); err != nil {
		t.Fatal(err)
	}
	// Nobody ever writes to it: a blocking open would wait for ever.
	reload <- syscall.SIGHUP
	waitForLong(t, "the reload to fail", 2*time.Second, func() bool { return strings.Contains(f.log.String(), "reload failed") })
	if !strings.Contains(f.log.String(), key+": not a regular file") {
		t.Errorf("reload failure does not name the FIFO:\n%s", f.log)
	}
	start := time.Now()
	f.srv.MustRun("nft", "delete", "table", "inet", "seqknock")
	waitForLong(t, "the repair", 2*time.Second, func() bool { return ours(f.k, nil) })
	took := time.Since(start)
	time.Sleep(2 * time.Second)
	in, sent := stopProbes()
	t.Logf("with a FIFO key: table repaired %v after the nft command started; %d of %d unknocked SYNs got in", took, in, sent)
	if in != 0 {
		t.Errorf("%d unknocked SYNs got in", in)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	check := exec.CommandContext(ctx, bin, "--config", f.cfg.Path, "check-config")
	out, err := check.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatal("check-config blocked on the FIFO key")
	}
	if err == nil || !strings.Contains(string(out), key+": not a regular file") {
		t.Errorf("check-config: %v: %s", err, out)
	}
}
