//go:build linux

package integration

import (
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/totp"
)

// Scenario 1: ssh through the knock, as ProxyCommand, with ProxyUseFdpass,
// and over IPv6.
func TestSSHThroughKnock(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 100, 2*time.Second)
	w.startDaemon()
	for _, tc := range []struct {
		name   string
		proxy  string
		fdpass bool
		host   string
	}{
		{"proxy", w.proxyCmd("proxy"), false, w.cl.A4},
		{"fdpass", w.proxyCmd("fdpass"), true, w.cl.A4},
		{"ipv6", w.proxyCmd("proxy", "-6"), false, w.cl.A6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := w.sshRun(tc.proxy, tc.fdpass, tc.host, "echo", "through-the-knock")
			if err != nil || strings.TrimSpace(out) != "through-the-knock" {
				t.Fatalf("ssh: %v: %s", err, out)
			}
		})
	}
}

// Scenario 2: without a knock the SYN gets no answer: the port looks
// filtered (a timeout, not a refusal).
func TestNoKnockLooksFiltered(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 102, 2*time.Second)
	w.startDaemon()
	err := plainConnect(w.cli, w.cl.A4, 2*time.Second)
	var ne net.Error
	if err == nil || errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("plain connect: want a timeout, got %v", err)
	}
	args := append([]string{}, "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "root@"+w.cl.A4, "true")
	plain, perr := w.cli.Run("ssh", args...)
	if perr == nil || !strings.Contains(plain, "timed out") {
		t.Fatalf("plain ssh: want a connection time-out, got %v: %s", perr, plain)
	}
}

// Scenario 3: wrong key, wrong realm, or a clock offset beyond the
// tolerance: ssh fails with seqknock's clear error; within it, ssh works.
func TestKnockFailuresAreClear(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 104, 2*time.Second)
	w.startDaemon()
	base := []string{w.seqknock, "proxy", "--period", "2s", "--syn-timeout", "700ms"}
	for _, tc := range []struct {
		name  string
		flags []string
		ok    bool
	}{
		{"wrong key", []string{"--key-file", w.path("other.key"), "--realm", "lab"}, false},
		{"wrong realm", []string{"--key-file", w.path("alice.key"), "--realm", "prod"}, false},
		{"clock 3 periods slow", []string{"--key-file", w.path("alice.key"), "--realm", "lab", "--clock-offset", "-7s"}, false},
		{"clock 1 period slow", []string{"--key-file", w.path("alice.key"), "--realm", "lab", "--clock-offset", "-2s"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := strings.Join(append(append(append([]string{}, base...), tc.flags...), "%h", "%p"), " ")
			out, err := w.sshRun(proxy, false, w.cl.A4, "echo", "in")
			if tc.ok {
				if err != nil || strings.TrimSpace(out) != "in" {
					t.Fatalf("ssh: %v: %s", err, out)
				}
				return
			}
			want := "seqknock: no SYN-ACK from " + w.cl.A4 + ":22 to 1 knock(s) within 700ms each: the knock was dropped or the host is down; likely causes, in order: (1) the server does not hold this key"
			if err == nil || !strings.Contains(out, want) {
				t.Fatalf("ssh: %v\n%s\nwant the line %q", err, out, want)
			}
		})
	}
}

// Scenario 6: four ssh sessions started in one period all succeed, each
// with its own slot.
func TestFourSessionsOnePeriod(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 106, 20*time.Second)
	w.startDaemon()
	now := time.Now()
	if rest := totp.NextBoundary(now, w.period).Sub(now); rest < 8*time.Second {
		time.Sleep(rest + 100*time.Millisecond)
	}
	start := totp.Counter(time.Now(), w.period)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	outs := make([]string, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = w.sshRun(w.proxyCmd("proxy", "--syn-timeout", "3s"), false, w.cl.A4, "echo", "ok")
		}()
	}
	wg.Wait()
	if totp.Counter(time.Now(), w.period) != start {
		t.Log("the period turned during the test; slots of two periods were used")
	}
	for i := range 4 {
		if errs[i] != nil || strings.TrimSpace(outs[i]) != "ok" {
			t.Errorf("session %d: %v: %s", i, errs[i], outs[i])
		}
	}
	st, _ := w.srv.Run(w.seqknockd, "--config", w.path("seqknockd.toml"), "status", "--json")
	if !strings.Contains(st, `"used_elements": 4`) {
		t.Errorf("want 4 spent knocks, one per slot:\n%s", st)
	}
}

// Scenario 7: stop `seqknockd run`; a session opened before stays alive,
// and once the window has passed a new knock is refused.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 108, 2*time.Second)
	w.startDaemon()
	s := w.openSession()
	w.stopDaemon()
	if !strings.Contains(w.daemonLog.String(), "the table stays and its knocks expire by themselves") {
		t.Errorf("stop not logged:\n%s", w.daemonLog)
	}
	// The last sync's latest element expires (tolerance+2) periods later.
	time.Sleep(3*w.period + 500*time.Millisecond)
	out, err := w.sshRun(w.proxyCmd("proxy"), false, w.cl.A4, "true")
	if err == nil || !strings.Contains(out, "no SYN-ACK from") {
		t.Fatalf("knock after the window: %v: %s", err, out)
	}
	s.check(t, "still-alive")
}

// Scenario 8: a long session survives daemon restarts, a SIGHUP with a
// changed config, timer-form syncs, and teardown.
func TestSessionSurvivesOperations(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 110, 2*time.Second)
	w.startDaemon()
	s := w.openSession()
	w.stopDaemon()
	w.startDaemon()
	s.check(t, "after-restart")
	w.writeConfig("lab2")
	w.daemon.Process.Signal(syscall.SIGHUP)
	w.waitLog("config reloaded", 1)
	s.check(t, "after-sighup")
	// The new realm is in force.
	if out, err := w.sshRun(w.proxyCmd("proxy", "--realm", "lab2"), false, w.cl.A4, "true"); err != nil {
		t.Fatalf("new realm refused: %v: %s", err, out)
	}
	w.stopDaemon()
	for i := 0; i < 3; i++ {
		if out, err := w.srv.Run(w.seqknockd, "--config", w.path("seqknockd.toml"), "sync"); err != nil {
			t.Fatalf("timer sync: %v: %s", err, out)
		}
		s.check(t, "after-timer-sync")
		time.Sleep(300 * time.Millisecond)
	}
	if out, err := w.srv.Run(w.seqknockd, "--config", w.path("seqknockd.toml"), "teardown"); err != nil || !strings.Contains(out, "removed table inet seqknock") {
		t.Fatalf("teardown: %v: %s", err, out)
	}
	s.check(t, "after-teardown")
}

// Scenario 9: a corrupt config on SIGHUP keeps the old rules and logs one
// clear line; a key file made world-readable is refused at reload.
func TestBadReload(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 112, 2*time.Second)
	w.startDaemon()
	cfgPath := w.path("seqknockd.toml")
	good, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(good), "port = 22", "port = 70000", 1)), 0o600)
	w.daemon.Process.Signal(syscall.SIGHUP)
	w.waitLog("reload failed", 1)
	os.WriteFile(cfgPath, good, 0o600)
	os.Chmod(w.path("alice.key"), 0o644)
	w.daemon.Process.Signal(syscall.SIGHUP)
	w.waitLog("reload failed", 2)
	log := w.daemonLog.String()
	var fails []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "reload failed") {
			fails = append(fails, l)
		}
	}
	if !strings.Contains(fails[0], cfgPath+":5: service[0].port: 70000 out of range 1..65535") {
		t.Errorf("corrupt config line: %s", fails[0])
	}
	if !strings.Contains(fails[1], "readable by group or others") || !strings.Contains(fails[1], "chmod 600 "+w.path("alice.key")) {
		t.Errorf("unsafe key line: %s", fails[1])
	}
	// The old rules still admit alice (her client reads the key: make it
	// private again for the client's own check).
	os.Chmod(w.path("alice.key"), 0o600)
	w.waitLog("why=rotate", 1)
	if out, err := w.sshRun(w.proxyCmd("proxy"), false, w.cl.A4, "true"); err != nil {
		t.Fatalf("after bad reloads: %v: %s", err, out)
	}
	if strings.Contains(log, base64Key(aliceKey)) {
		t.Error("the daemon log shows key material")
	}
}
