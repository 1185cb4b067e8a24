//go:build linux

package client

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
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

// binEnv returns a key file and an environment with a private state dir.
func binEnv(t *testing.T) (keyFile string, env []string) {
	t.Helper()
	dir := t.TempDir()
	keyFile = filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(testKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env = []string{"HOME=" + dir, "XDG_STATE_HOME=" + filepath.Join(dir, "state"), "PATH=" + os.Getenv("PATH")}
	return keyFile, env
}

// TestProxyRelays16MiB runs `seqknock proxy` in the client namespace with
// 16 MiB on stdin; the server reads to EOF (the relay's half-close), checks
// what it got, then sends 16 MiB back and closes, which must end the proxy.
func TestProxyRelays16MiB(t *testing.T) {
	h := newKnockHost(t, 44)
	h.allow(t, testKey, time.Now())
	bin := netnstest.Build(t, "client/cmd/seqknock")
	kf, env := binEnv(t)

	const size = 16 << 20
	up := make([]byte, size)
	down := make([]byte, size)
	rand.Read(up)
	rand.Read(down)

	serverGot := make(chan [32]byte, 1)
	go func() {
		c := <-h.accepted
		defer c.Close()
		hsh := sha256.New()
		n, _ := io.Copy(hsh, c) // until the client's half-close
		var sum [32]byte
		copy(sum[:], hsh.Sum(nil))
		if n != size {
			sum = [32]byte{}
		}
		serverGot <- sum
		c.Write(down)
	}()

	cmd := h.client.Command(bin, "proxy", "--key-file", kf, "--syn-timeout", "2s", h.link.A4, "2222")
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(up)
	var stdout bytes.Buffer
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("proxy: %v: %s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("proxy did not exit after both directions ended")
	}
	if got := <-serverGot; got != sha256.Sum256(up) {
		t.Error("server received other bytes than the proxy's stdin")
	}
	if sha256.Sum256(stdout.Bytes()) != sha256.Sum256(down) {
		t.Errorf("proxy's stdout differs from what the server sent (%d of %d bytes)", stdout.Len(), size)
	}
}

// TestExecDropsPrivileges runs `seqknock exec --user USER` as root (USER a
// user made for the test, whose key seqknock reads as USER): the program
// runs as USER with USER's groups only, talks over fds 6 and 7, sees
// TCPREMOTEIP, and the exit status of the program is seqknock's.
func TestExecDropsPrivileges(t *testing.T) {
	h := newKnockHost(t, 45)
	h.allowSlots(t, testKey, time.Now(), 32)
	bin := netnstest.Build(t, "client/cmd/seqknock")
	u := netnstest.NewUser(t)
	kf := u.WriteFile("own.key", keyText(testKey), 0o600)
	got := h.greetOnce()
	script := `id -u; id -G; echo "$TCPREMOTEIP:$TCPREMOTEPORT"; read line <&6; echo "got $line"; echo "hello from $(id -u)" >&7; exit 7`
	cmd := h.client.Command(bin, "exec", "--user", u.Name, "--key-file", kf, "--slots", "32", "--syn-timeout", "2s", h.link.A4, "2222", "--", "sh", "-c", script)
	cmd.Env = []string{"HOME=/root", "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("exec: %v, want exit status 7: %s", err, out)
	}
	uid, gid := strconv.Itoa(u.UID), strconv.Itoa(u.GID)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 || lines[0] != uid || lines[1] != gid || lines[2] != h.link.A4+":2222" || lines[3] != "got greeting" {
		t.Errorf("program output:\n%s", out)
	}
	select {
	case s := <-got:
		if s != "hello from "+uid+"\n" {
			t.Errorf("server got %q", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server got nothing")
	}
	// A program killed by a signal: seqknock ends by the same signal.
	go func() {
		c := <-h.accepted
		c.Close()
	}()
	cmd = h.client.Command(bin, "exec", "--user", u.Name, "--key-file", kf, "--slots", "32", "--syn-timeout", "2s", h.link.A4, "2222", "--", "sh", "-c", "kill -TERM $$")
	cmd.Env = []string{"HOME=/root", "PATH=/usr/bin:/bin"}
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("program killed by SIGTERM: seqknock ended with %v", err)
	}
}

// TestExecForwardsSignals: a signal seqknock exec gets while its program
// runs (USR1) reaches the program, whose exit status is then seqknock's.
func TestExecForwardsSignals(t *testing.T) {
	h := newKnockHost(t, 171)
	h.allowSlots(t, testKey, time.Now(), 32)
	bin := netnstest.Build(t, "client/cmd/seqknock")
	kf := filepath.Join(t.TempDir(), "k.key")
	if err := os.WriteFile(kf, keyText(testKey), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := h.client.Command(bin, "exec", "--key-file", kf, "--slots", "32", "--syn-timeout", "2s", h.link.A4, "2222", "--",
		"sh", "-c", `trap 'exit 42' USR1; echo ready; while :; do sleep 0.1; done`)
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	// A group of its own, so the program goes too when the test ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("program said %q, want ready", line)
	}
	cmd.Process.Signal(syscall.SIGUSR1)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || cmd.ProcessState.ExitCode() != 42 {
			t.Errorf("seqknock exec after SIGUSR1: %v, want exit status 42 (the program's trap)", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("seqknock exec still runs 20 s after SIGUSR1: the program did not get it")
	}
}

// TestExecUnderSudoEnv checks that SUDO_UID/SUDO_GID pick the user to
// become when no --user is given, and that --user is then refused.
func TestExecUnderSudoEnv(t *testing.T) {
	h := newKnockHost(t, 46)
	h.allowSlots(t, testKey, time.Now(), 32)
	bin := netnstest.Build(t, "client/cmd/seqknock")
	u := netnstest.NewUser(t)
	kf := u.WriteFile("own.key", keyText(testKey), 0o600)
	go func() {
		c := <-h.accepted
		c.Close()
	}()
	env := []string{"HOME=/root", "PATH=/usr/bin:/bin", "SUDO_UID=" + strconv.Itoa(u.UID), "SUDO_GID=" + strconv.Itoa(u.GID)}
	cmd := h.client.Command(bin, "exec", "--key-file", kf, "--slots", "32", "--syn-timeout", "2s", h.link.A4, "2222", "--", "id", "-u")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(u.UID) {
		t.Fatalf("exec under sudo env: %v: %s", err, out)
	}
	cmd = h.client.Command(bin, "exec", "--user", "nobody", "--key-file", kf, "--syn-timeout", "2s", h.link.A4, "2222", "--", "id", "-u")
	cmd.Env = env
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "--user is for root only") {
		t.Fatalf("--user under sudo env: %v: %s", err, out)
	}
}

// TestSetcapDropsCapabilities runs a copy of seqknock that has the file
// capability cap_net_admin+ep as nobody: it connects with the knock, and
// while it relays, its permitted and effective sets are empty on every
// thread.
func TestSetcapDropsCapabilities(t *testing.T) {
	h := newKnockHost(t, 48)
	netnstest.RequireRoot(t, "setcap", "setpriv")
	h.allowSlots(t, testKey, time.Now(), 32)
	// One state directory for both builds' runs, as for one user: each
	// dial knocks once by default, so two clients with separate slot
	// files would collide on slot 0.
	state, err := os.MkdirTemp("", "seqknock-setcap-state-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	os.Chown(state, 65534, 65534)
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) { setcapRun(t, h, b.build(t, "client/cmd/seqknock"), state) })
	}
}

// builds are the two ways the client is built: CGO_ENABLED=0 (the release
// build) and with cgo (plain go build or go install where a C compiler is).
var builds = []struct {
	name  string
	build func(t testing.TB, pkg string) string
}{{"static", netnstest.Build}, {"cgo", netnstest.BuildCgo}}

func setcapRun(t *testing.T, h *knockHost, built, state string) {
	dir, err := os.MkdirTemp("", "seqknock-setcap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src, _ := os.ReadFile(built)
	bin := filepath.Join(dir, "seqknock")
	os.WriteFile(bin, src, 0o755)
	if out, err := exec.Command("setcap", "cap_net_admin+ep", bin).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v: %s", err, out)
	}
	kf := filepath.Join(dir, "key")
	os.WriteFile(kf, []byte(base64.StdEncoding.EncodeToString(testKey)+"\n"), 0o600)
	os.Chown(kf, 65534, 65534)
	os.Chown(dir, 65534, 65534)

	cmd := h.client.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "proxy", "--key-file", kf, "--slots", "32", "--syn-timeout", "2s", h.link.A4, "2222")
	cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin", "XDG_STATE_HOME=" + state}
	stdin, _ := cmd.StdinPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()
	var srv net.Conn
	select {
	case srv = <-h.accepted:
		defer srv.Close()
	case <-time.After(10 * time.Second):
		t.Fatalf("no connection: %s", stderr.String())
	}
	// The relay is running: every thread of the process has dropped.
	stdin.Write([]byte("x"))
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := srv.Read(make([]byte, 1)); err != nil {
		t.Fatalf("relay: %v: %s", err, stderr.String())
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", cmd.Process.Pid))
	if len(tasks) == 0 {
		t.Fatal("no threads found")
	}
	for _, st := range tasks {
		b, _ := os.ReadFile(st)
		for _, l := range strings.Split(string(b), "\n") {
			if (strings.HasPrefix(l, "CapPrm:") || strings.HasPrefix(l, "CapEff:") || strings.HasPrefix(l, "CapAmb:") || strings.HasPrefix(l, "CapInh:")) && !strings.HasSuffix(l, "0000000000000000") {
				t.Errorf("%s: %s", st, l)
			}
			if strings.HasPrefix(l, "Uid:") && !strings.Contains(l, "65534") {
				t.Errorf("%s: %s", st, l)
			}
		}
	}
	// A capable process never takes a socket from its environment (the
	// hand-over of a cgo build), whatever the caller puts there.
	cmd = h.client.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "proxy", "--key-file", kf, h.link.A4, "2222")
	cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin", "SEQKNOCK_CONNECTED_FD=0"}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "SEQKNOCK_CONNECTED_FD: refused in a process that holds capabilities") {
		t.Errorf("SEQKNOCK_CONNECTED_FD in a capable process: %v: %s", err, out)
	}
}

// TestRootModesBothBuilds: root acting for itself has nothing to drop and
// works with either build (the program runs as root); root with --user
// runs everything as that user, and the program holds no capability,
// with either build.
func TestRootModesBothBuilds(t *testing.T) {
	h := newKnockHost(t, 166)
	h.allowSlots(t, testKey, time.Now(), 32)
	h.allowSlots(t, bobKey, time.Now(), 32)
	u := netnstest.NewUser(t)
	// Root and the user are two clients with slot files of their own, so
	// each has a key of its own: with one key they would spend each
	// other's slots.
	kf := u.WriteFile("own.key", keyText(testKey), 0o600)
	ukf := u.WriteFile("user.key", keyText(bobKey), 0o600)
	go func() {
		for c := range h.accepted {
			c.Close()
		}
	}()
	// One home for root's runs of both builds: one slot file, as for one
	// user (each dial knocks once by default).
	rootHome := t.TempDir()
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) {
			bin := b.build(t, "client/cmd/seqknock")
			run := func(kf string, args ...string) string {
				cmd := h.client.Command(bin, append([]string{"exec", "--key-file", kf, "--slots", "32", "--syn-timeout", "2s"}, args...)...)
				cmd.Env = []string{"HOME=" + rootHome, "PATH=/usr/bin:/bin"}
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%v: %v: %s", args, err, out)
				}
				return string(out)
			}
			if out := run(kf, h.link.A4, "2222", "--", "id", "-u"); out != "0\n" {
				t.Errorf("root for itself: %q", out)
			}
			out := run(ukf, "--user", u.Name, h.link.A4, "2222", "--", "sh", "-c", "id -u; grep -E '^Cap(Inh|Prm|Eff|Amb):' /proc/self/status /proc/$PPID/task/*/status")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) < 9 || lines[0] != strconv.Itoa(u.UID) {
				t.Fatalf("--user %s: %q", u.Name, out)
			}
			for _, l := range lines[1:] {
				if !strings.HasSuffix(l, "0000000000000000") {
					t.Errorf("--user %s: %s", u.Name, l)
				}
			}
		})
	}
}
