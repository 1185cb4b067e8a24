//go:build linux

package server

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// runBin runs the seqknockd binary in ns and returns its output and exit
// status.
func runBin(t *testing.T, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestStatusDaemonLiveness: with a real `seqknockd run`, status exits 0
// and shows its pid, uptime and last sync; within 2 s of a kill -9 of the
// daemon, with its table still installed and current, status exits 3
// saying no seqknockd keeps the table in force (text and --json); within
// 2 s of a restart it exits 0 again.
func TestStatusDaemonLiveness(t *testing.T) {
	ns, bin, dir, cfg, _ := binBed(t, "slive")
	runDir := filepath.Join(dir, "run")
	env := "SEQKNOCKD_RUNTIME_DIR=" + runDir
	status := func(args ...string) (string, string, int) {
		cmd := ns.Command(bin, append([]string{"--config", cfg, "status"}, args...)...)
		cmd.Env = append(os.Environ(), env)
		return runBin(t, cmd)
	}
	// within polls status until its exit status is code and its output
	// has says, for at most 2 s, and returns its output then.
	within := func(what string, code int, says string) string {
		t.Helper()
		start := time.Now()
		for {
			out, errOut, got := status()
			if got == code && strings.Contains(out+errOut, says) {
				t.Logf("%s: status exit %d after %v", what, code, time.Since(start).Round(time.Millisecond))
				return out + errOut
			}
			if time.Since(start) > 2*time.Second {
				t.Fatalf("%s: status still exits %d after 2 s, want %d saying %q:\n%s%s", what, got, code, says, out, errOut)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	d, _ := startBin(t, ns, bin, cfg, env)
	out := within("daemon running", 0, "pid "+itoa(d.Process.Pid))
	if !strings.Contains(out, "daemon:         seqknockd run, pid "+itoa(d.Process.Pid)+", up ") || !strings.Contains(out, "last sync") {
		t.Fatalf("status does not show the daemon's pid, uptime and last sync:\n%s", out)
	}
	jout, _, _ := status("--json")
	var st Status
	if err := json.Unmarshal([]byte(jout), &st); err != nil || st.Daemon == nil || !st.Daemon.Running || st.Daemon.Pid != d.Process.Pid || st.Daemon.LastSync.IsZero() {
		t.Fatalf("--json daemon: %v\n%s", err, jout)
	}

	d.Process.Signal(syscall.SIGKILL)
	d.Wait()
	out = within("after kill -9", 3, NoDaemon)
	if !strings.Contains(out, NoDaemon) || !strings.Contains(out, "(current)") {
		t.Fatalf("after kill -9 status does not say %q with the table current:\n%s", NoDaemon, out)
	}
	if _, err := ns.Run("nft", "list", "table", "inet", "seqknock"); err != nil {
		t.Fatalf("the table is gone: %v", err)
	}
	jout, _, code := status("--json")
	if err := json.Unmarshal([]byte(jout), &st); err != nil || code != 3 || st.Daemon == nil || st.Daemon.Running {
		t.Fatalf("--json after kill -9: exit %d, %v\n%s", code, err, jout)
	}
	if _, _, code := status("--no-daemon"); code != 0 {
		t.Fatalf("status --no-daemon exits %d with the table current", code)
	}

	d2 := ns.Command(bin, "--config", cfg, "run")
	d2.Env = append(os.Environ(), env)
	if err := d2.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d2.Process.Kill(); d2.Wait() })
	// The new daemon holds the lock at once, and names itself in it a
	// moment later ("starting" meanwhile).
	within("after a restart", 0, "pid "+itoa(d2.Process.Pid))
}

// TestTeardownRefusedUnderDaemon: teardown with a running daemon exits 1
// with one line naming the daemon and the service to stop; the table and
// the daemon are untouched. --force removes the table.
func TestTeardownRefusedUnderDaemon(t *testing.T) {
	ns, bin, dir, cfg, _ := binBed(t, "stear")
	env := "SEQKNOCKD_RUNTIME_DIR=" + filepath.Join(dir, "run")
	d, log := startBin(t, ns, bin, cfg, env)
	before := ns.MustRun("nft", "-a", "list", "table", "inet", "seqknock")
	syncs := strings.Count(log.String(), "msg=sync")
	teardown := ns.Command(bin, "--config", cfg, "teardown")
	teardown.Env = append(os.Environ(), env)
	out, errOut, code := runBin(t, teardown)
	if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 ||
		!strings.HasPrefix(errOut, "seqknockd: seqknockd run (pid "+itoa(d.Process.Pid)+") keeps table inet seqknock in force") ||
		!strings.Contains(errOut, "systemctl stop seqknockd") {
		t.Fatalf("teardown under a daemon: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	time.Sleep(200 * time.Millisecond)
	after := ns.MustRun("nft", "-a", "list", "table", "inet", "seqknock")
	// The first line holds the table's handle: a table removed and put
	// back has a new one.
	if first(before) != first(after) {
		t.Fatalf("the table was replaced: %q, then %q", first(before), first(after))
	}
	if d.ProcessState != nil || syscall.Kill(d.Process.Pid, 0) != nil {
		t.Fatal("the daemon is gone")
	}
	if n := strings.Count(log.String(), "why=repair"); n != 0 || strings.Count(log.String(), "msg=sync") > syncs+1 {
		t.Fatalf("the daemon repaired its table:\n%s", log.String())
	}
	force := ns.Command(bin, "--config", cfg, "teardown", "--force")
	force.Env = append(os.Environ(), env)
	if out, errOut, code := runBin(t, force); code != 0 || !strings.Contains(out, "removed table inet seqknock") {
		t.Fatalf("teardown --force: exit %d, %q %q", code, out, errOut)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func first(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

// TestStatusRefusesUserRuntimeDir: an unprivileged user runs seqknockd
// run with a runtime directory of their own, where it takes the lock (its
// syncs fail without CAP_NET_ADMIN, and it keeps running). Root's status
// and teardown pointed at that directory refuse it, naming its owner,
// instead of taking the user's process for the daemon.
func TestStatusRefusesUserRuntimeDir(t *testing.T) {
	ns, bin, _, cfg, _ := binBed(t, "suser")
	ns.MustRun(bin, "--config", cfg, "sync")
	u := netnstest.NewUser(t)
	u.WriteFile("k.key", []byte("a2V5LTAxMjM0NTY3ODlhYmNkZWZnaGlqa2xtbm9wcXJzdHU=\n"), 0o600)
	ucfg := u.WriteFile("c.toml", []byte("[[service]]\nport = 22\n[[user]]\nname = \"mallory\"\nkey_file = \"k.key\"\n"), 0o600)
	runDir := filepath.Join(u.Home, "run")
	log := &netnstest.Buffer{}
	fake := u.Command(ns, bin, "--config", ucfg, "run", "--runtime-dir", runDir, "--state", NoState)
	fake.Stderr = log
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Process.Kill(); fake.Wait() })
	waitForLong(t, "the user's daemon to take its lock and fail to sync", 10*time.Second, func() bool {
		return strings.Contains(log.String(), "sync failed")
	})
	for _, args := range [][]string{{"status"}, {"status", "--no-daemon"}, {"teardown"}} {
		out, errOut, code := runBin(t, ns.Command(bin, append([]string{"--config", cfg}, append(args, "--runtime-dir", runDir)...)...))
		if code != 1 || !strings.Contains(errOut, runDir+": ") || !strings.Contains(errOut, "owned by uid "+itoa(u.UID)+", not root") || strings.Contains(out, "seqknockd run, pid") {
			t.Errorf("%v with the user's runtime directory: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if _, err := ns.Run("nft", "list", "table", "inet", "seqknock"); err != nil {
		t.Fatalf("the table is gone: %v", err)
	}
}
