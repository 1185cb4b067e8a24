//go:build linux

package server

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
)

// execReload returns the ExecReload command lines of the repository's
// seqknockd.service, in order.
func execReload(t *testing.T) []string {
	t.Helper()
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(strings.TrimSpace(string(root)), "scripts", "systemd", "seqknockd.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ExecReload="); ok {
			lines = append(lines, v)
		}
	}
	if len(lines) == 0 {
		t.Fatal("seqknockd.service has no ExecReload")
	}
	return lines
}

// TestReloadBadConfigFails does what `systemctl reload seqknockd` does,
// without systemd: it runs the unit's ExecReload lines in order, as systemd
// does, stopping at the first that fails. With a bad config the reload
// fails with the config's one-line error, the daemon is not signalled and
// the table is unchanged; with a good one the daemon reloads it.
func TestReloadBadConfigFails(t *testing.T) {
	ns, bin, _, cfg, text := binBed(t, "sreld")
	log := &netnstest.Buffer{}
	daemon := ns.Command(bin, "--config", cfg, "run")
	daemon.Stderr = log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if daemon.ProcessState == nil {
			daemon.Process.Kill()
			daemon.Wait()
		}
	})
	waitLog := func(s string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(log.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("daemon log never said %q:\n%s", s, log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLog("msg=sync")
	pid := strconv.Itoa(daemon.Process.Pid)
	reload := func() (string, error) {
		for _, line := range execReload(t) {
			line = strings.ReplaceAll(strings.ReplaceAll(line, "/usr/local/sbin/seqknockd", bin), "$MAINPID", pid)
			cmd := ns.Command("sh", "-c", line)
			cmd.Env = append(os.Environ(), "SEQKNOCKD_CONFIG="+cfg)
			if out, err := cmd.CombinedOutput(); err != nil {
				return string(out), err
			}
		}
		return "", nil
	}
	listing := func() string { return reExpires.ReplaceAllString(ns.MustRun("nft", "list", "ruleset"), "") }
	// The daemon rotates its knocks at each 30 s boundary, which changes
	// the table by design; compare before and after within one period.
	if left := time.Until(totp.Start(totp.Counter(time.Now(), 30*time.Second)+1, 30*time.Second)); left < 5*time.Second {
		time.Sleep(left)
		waitLog("why=rotate")
	}
	rotations := strings.Count(log.String(), "why=rotate")
	before := listing()

	os.WriteFile(cfg, []byte(strings.Replace(text, "port = 2222", "port = 0", 1)), 0o600)
	out, err := reload()
	if err == nil {
		t.Fatal("reload with a bad config succeeded")
	}
	if want := cfg + ":7: service[1].port: 0 out of range"; !strings.Contains(out, want) || strings.Count(out, "\n") != 1 {
		t.Errorf("reload output %q, want one line with %q", out, want)
	}
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(log.String(), "reload") {
		t.Errorf("the daemon was signalled:\n%s", log)
	}
	if after := listing(); after != before {
		if strings.Count(log.String(), "why=rotate") != rotations {
			t.Fatalf("the daemon rotated during the check; the comparison is void:\n%s", log)
		}
		t.Errorf("a failed reload changed the ruleset:\n%s", after)
	}
	if daemon.ProcessState != nil {
		t.Fatal("daemon exited")
	}

	os.WriteFile(cfg, []byte(text+"[[service]]\nport = 2223\n"), 0o600)
	if out, err := reload(); err != nil {
		t.Fatalf("reload with a good config: %v: %s", err, out)
	}
	waitLog("config reloaded")
	waitLog("why=reload")
	if after := listing(); !strings.Contains(after, "2222, 2223") {
		t.Errorf("reload did not apply the new port:\n%s", after)
	}
	daemon.Process.Signal(syscall.SIGTERM)
	if err := daemon.Wait(); err != nil {
		t.Errorf("daemon exit: %v\n%s", err, log)
	}
}
