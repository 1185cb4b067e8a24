//go:build linux

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
)

// waitForPeriodRest returns the counter of the period now, after waiting
// for the next one when less than need is left of it.
func waitForPeriodRest(period, need time.Duration) uint64 {
	now := time.Now()
	if rest := totp.NextBoundary(now, period).Sub(now); rest < need {
		time.Sleep(rest + 100*time.Millisecond)
	}
	return totp.Counter(time.Now(), period)
}

// A knock that fails for a cause the user can fix (a wrong key, a clock
// two minutes ahead) is reported within 4 s with the default client
// settings, naming the causes, and spends no more than its own slot: once
// the cause is fixed, a connect in the same period gets in.
func TestFailedKnockIsFastAndSparesThePeriod(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 244, 30*time.Second)
	w.startDaemon()
	// Default settings: no --syn-timeout, --attempts or --period.
	proxy := func(flags ...string) string {
		return strings.Join(append(append([]string{w.seqknock, "proxy", "--realm", "lab"}, flags...), "%h", "%p"), " ")
	}
	counter := waitForPeriodRest(w.period, 16*time.Second)
	for _, tc := range []struct {
		name       string
		wrong, fix []string
		want       string
	}{
		{"wrong key", []string{"--key-file", w.path("other.key")}, []string{"--key-file", w.path("alice.key")},
			"(1) the server does not hold this key for you: compare its fingerprint " + totp.Fingerprint(otherKey)},
		{"clock 2 min ahead", []string{"--key-file", w.path("alice.key"), "--clock-offset", "2m"}, []string{"--key-file", w.path("alice.key")},
			"retry with --clock-offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, err := w.sshRun(proxy(tc.wrong...), false, w.cl.A4, "echo", "in")
			took := time.Since(start)
			if err == nil || !strings.Contains(out, "seqknock: no SYN-ACK from "+w.cl.A4+":22 to 1 knock(s) within 3s each") || !strings.Contains(out, tc.want) {
				t.Fatalf("ssh: %v\n%s\nwant the causes, with %q", err, out, tc.want)
			}
			t.Logf("the failed knock took %v", took.Round(time.Millisecond))
			if took > 4*time.Second {
				t.Errorf("the failed knock took %v, want at most 4 s", took)
			}
			out, err = w.sshRun(proxy(tc.fix...), false, w.cl.A4, "echo", "in")
			if err != nil || strings.TrimSpace(out) != "in" {
				t.Fatalf("after the fix, in the same period: %v: %s", err, out)
			}
		})
	}
	if now := totp.Counter(time.Now(), w.period); now != counter {
		t.Fatalf("the period turned (%d to %d): the fixes were not tried in the failures' period", counter, now)
	}
}

// Twenty ssh runs in a row through the stanza `seqknock ssh-config` prints,
// by a real user with real OpenSSH, all succeed: they share one connection,
// so the server sees one knock.
func TestTwentySSHRunsThroughTheStanza(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 246, 30*time.Second)
	netnstest.RequireRoot(t, "setcap")
	w.startDaemon()
	u := netnstest.NewUser(t)
	// The user's own seqknock, with the capability to set an ISN.
	binDir, err := os.MkdirTemp("", "seqknock-stanza-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	os.Chmod(binDir, 0o755)
	bin := filepath.Join(binDir, "seqknock")
	if src, err := os.ReadFile(w.seqknock); err != nil || os.WriteFile(bin, src, 0o755) != nil {
		t.Fatalf("copy seqknock: %v", err)
	}
	if out, err := exec.Command("setcap", "cap_net_admin+ep", bin).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v: %s", err, out)
	}
	key, _ := os.ReadFile(w.path("alice.key"))
	u.WriteFile(".config/seqknock/alice.key", key, 0o600)
	u.WriteFile(".config/seqknock/client.toml", []byte("[[host]]\nmatch = \"srv\"\nkey_file = \"alice.key\"\nrealm = \"lab\"\n"), 0o600)
	id, _ := os.ReadFile(w.path("id"))
	u.WriteFile(".ssh/id", id, 0o600)
	os.Chmod(filepath.Join(u.Home, ".ssh"), 0o700)

	out, err := u.Command(nil, bin, "ssh-config", "srv").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\n    ControlMaster auto\n") {
		t.Fatalf("ssh-config: %v: %s", err, out)
	}
	conf := string(out) + "    HostName " + w.cl.A4 + "\n    User root\n    IdentityFile ~/.ssh/id\n    IdentitiesOnly yes\n" +
		"    BatchMode yes\n    StrictHostKeyChecking accept-new\n    LogLevel ERROR\n"
	u.WriteFile(".ssh/config", []byte(conf), 0o600)
	t.Cleanup(func() { u.Command(w.cli, "ssh", "-O", "exit", "srv").Run() })

	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := u.Command(w.cli, "ssh", "srv", "echo", "run-"+strconv.Itoa(i))
		cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
		cmd.Dir, cmd.Env = u.Home, u.Command(nil, "true").Env
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || strings.TrimSpace(string(out)) != "run-"+strconv.Itoa(i) {
			t.Fatalf("ssh run %d of 20: %v: %s\nssh config:\n%s", i+1, err, out, conf)
		}
	}
	st, _ := w.srv.Run(w.seqknockd, "--config", w.path("seqknockd.toml"), "status", "--json")
	if !strings.Contains(st, `"used_elements": 1`) {
		t.Errorf("want one knock spent for the 20 runs:\n%s", st)
	}

	// With ControlPersist, ssh sends the ProxyCommand's error output to
	// /dev/null; seqknock then says why on the terminal (script gives ssh
	// one).
	if err := u.Command(w.cli, "ssh", "-O", "exit", "srv").Run(); err != nil {
		t.Fatalf("ssh -O exit: %v", err)
	}
	other, _ := os.ReadFile(w.path("other.key"))
	okf := u.WriteFile(".config/seqknock/other.key", other, 0o600)
	sshLine := "ssh -o 'ProxyCommand=" + bin + " proxy --key-file " + okf + " --realm lab %h %p' srv true"
	out, err = u.Command(w.cli, "script", "-qec", sshLine, "/dev/null").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "seqknock: no SYN-ACK from "+w.cl.A4+":22") {
		t.Errorf("a failed knock under ControlPersist: %v: %q; want seqknock's reason on the terminal", err, out)
	}
}
