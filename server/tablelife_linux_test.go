//go:build linux

package server

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/nftgen"
)

// foreignTable is a hand-written nftables.conf that defines a table of the
// daemon's name in a shape the daemon cannot change in place: its input
// chain is on priority filter, the daemon's on filter - 10.
const foreignTable = "flush ruleset\ntable inet seqknock {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"

// ours says whether the live table is the daemon's again, whole: its
// rules, knocks installed, and every key of spent in its used set.
func ours(k Kernel, spent []nftgen.Key) bool {
	live, err := k.Read("seqknock")
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

// TestForeignTableReplacedAtOnce: `nft -f` of a file that flushes the
// ruleset and defines its own table inet seqknock, 20 times under a
// running daemon: each time the daemon replaces it whole within 100 ms,
// the knock spent before stays spent, an established session survives,
// and a fresh knock is admitted at the end.
func TestForeignTableReplacedAtOnce(t *testing.T) {
	f := newInForce(t, 82, fmt.Sprintf(tbConfig, "30s", 1))
	conn, srv := f.knockedSession(t)
	live, err := f.k.Read("seqknock")
	if err != nil || len(live.UsedKeys) != 1 {
		t.Fatalf("used set after the knocked session: %+v, %v", live, err)
	}
	spent := live.UsedKeys
	file := filepath.Join(f.dir, "foreign.conf")
	if err := os.WriteFile(file, []byte(foreignTable), 0o600); err != nil {
		t.Fatal(err)
	}
	const reps = 20
	var worst time.Duration
	for i := range reps {
		load := f.srv.Command("nft", "-f", file)
		if out, err := load.CombinedOutput(); err != nil {
			t.Fatalf("nft -f: %v: %s", err, out)
		}
		loaded := time.Now()
		deadline := loaded.Add(5 * time.Second)
		for !ours(f.k, spent) {
			if time.Now().After(deadline) {
				t.Fatalf("repetition %d: the foreign table is still in place after 5 s:\n%s\n%s", i, f.srv.MustRun("nft", "list", "ruleset"), f.log)
			}
			time.Sleep(time.Millisecond)
		}
		worst = max(worst, time.Since(loaded))
		pingBoth(t, conn, srv, fmt.Sprintf("repetition %d", i))
	}
	t.Logf("foreign table replaced within %v at worst over %d repetitions (from nft -f returning)", worst, reps)
	if worst > 100*time.Millisecond {
		t.Errorf("a foreign table stood for %v", worst)
	}
	if n := strings.Count(f.log.String(), "replaced_foreign_table=true"); n < reps {
		t.Errorf("%d replacements logged, want %d", n, reps)
	}
	// The spent knock is refused, a fresh one admitted.
	replay := client.Dialer{Key: aliceKey, Realm: "lab", Resolve: literal, Reserve: fixedSlot(0), Slots: 1, SynTimeout: 300 * time.Millisecond}
	if err := f.knock(t, f.cli, replay, f.cl.A4, 22); err == nil {
		t.Error("the knock spent before the replacements was admitted again")
	}
	fresh := client.Dialer{Key: aliceKey, Realm: "lab", Resolve: literal, Reserve: fixedSlot(1), Slots: 1, SynTimeout: time.Second}
	if err := f.knock(t, f.cli, fresh, f.cl.A4, 22); err != nil {
		t.Fatalf("a fresh knock after the replacements: %v", err)
	}
}

// TestRemovalDuringBackoffRepairedAtOnce: while syncs fail and the daemon
// waits to retry, someone removes the table; once the kernel takes a batch
// again the removal is repaired at once, not at the next retry.
func TestRemovalDuringBackoffRepairedAtOnce(t *testing.T) {
	f := newInForce(t, 86, fmt.Sprintf(tbConfig, "30s", 1))
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
	t.Logf("removed during a backoff after %d failed syncs: repaired %v after the nft command started", failures, took)
	if took > time.Second {
		t.Errorf("repaired after %v, want within 1 s:\n%s", took, f.log)
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
// its config; a table removal after it is repaired at once. check-config
// on that config fails at once too.
func TestFIFOKeyDoesNotBlock(t *testing.T) {
	ns, bin, dir, cfg, _ := binBed(t, "sfifo")
	d, log := startBin(t, ns, bin, cfg, "SEQKNOCKD_RUNTIME_DIR="+filepath.Join(dir, "run"))
	key := filepath.Join(dir, "alice.key")
	os.Remove(key)
	if err := syscall.Mkfifo(key, 0o600); err != nil {
		t.Fatal(err)
	}
	// Nobody ever writes to it: a blocking open would wait for ever.
	d.Process.Signal(syscall.SIGHUP)
	waitForLong(t, "the reload to fail", 2*time.Second, func() bool { return strings.Contains(log.String(), "reload failed") })
	if !strings.Contains(log.String(), key+": not a regular file") {
		t.Errorf("reload failure does not name the FIFO:\n%s", log)
	}
	ns.MustRun("nft", "delete", "table", "inet", "seqknock")
	start := time.Now()
	k := NewKernel(ns.FD())
	waitForLong(t, "the repair", 2*time.Second, func() bool { return ours(k, nil) })
	t.Logf("table repaired %v after its removal, with a FIFO key", time.Since(start))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	check := exec.CommandContext(ctx, bin, "--config", cfg, "check-config")
	out, err := check.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatal("check-config blocked on the FIFO key")
	}
	if err == nil || !strings.Contains(string(out), key+": not a regular file") {
		t.Errorf("check-config: %v: %s", err, out)
	}
}
