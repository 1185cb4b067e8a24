//go:build linux

package client

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
)

// The tests in this file play a user who may run seqknock, and nothing
// else, under sudo (a real user made with useradd, a real sudoers rule) and
// who tries to use root's rights through it. Each attack must end in a
// one-line error and leave root's files as they were.

var bobKey = []byte("bob-is-another-user-0123456789ab")

func keyText(key []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(key) + "\n")
}

// sudoBed is a knock host that admits testKey and bobKey, the seqknock
// binary, and a user allowed to run exactly that binary under sudo, with a
// key of their own (testKey) in ~/.config/seqknock/own.key.
type sudoBed struct {
	h   *knockHost
	bin string
	u   *netnstest.User
	key string
	// root is a directory only root may write, with a root-owned file
	// "precious" (mode 0644), a root-only key "bob.key" and a root-only
	// config "secret.toml" holding a recognizable line.
	root string
}

const secretLine = "password = SecretToken42"

func newSudoBed(t *testing.T, subnet int) *sudoBed {
	t.Helper()
	netnstest.RequireRoot(t, "sudo", "visudo", "useradd", "userdel", "setpriv", "tcpdump")
	b := &sudoBed{h: newKnockHost(t, subnet)}
	now := time.Now()
	b.h.allowSlots(t, testKey, now, 32)
	b.h.allowSlots(t, bobKey, now, 32)
	b.bin = netnstest.Build(t, "client/cmd/seqknock")
	b.u = netnstest.NewUser(t)
	b.u.AllowSudo(b.bin)
	b.key = b.u.WriteFile(".config/seqknock/own.key", keyText(testKey), 0o600)
	root, err := os.MkdirTemp("", "seqknock-rootonly-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	b.root = root
	os.WriteFile(filepath.Join(root, "precious"), []byte("root's precious bytes\n"), 0o644)
	os.WriteFile(filepath.Join(root, "bob.key"), keyText(bobKey), 0o600)
	os.WriteFile(filepath.Join(root, "secret.toml"), []byte(secretLine+"\n"), 0o600)
	os.WriteFile(filepath.Join(root, "hosts.toml"), []byte("[[host]]\nmatch = \"SecretToken-host\"\nkey_file = \"bob.key\"\n"), 0o600)
	os.MkdirAll(filepath.Join(root, "config", "seqknock"), 0o755)
	os.WriteFile(filepath.Join(root, "config", "seqknock", "client.toml"), []byte(secretLine+"\n"), 0o600)
	return b
}

// allowSlots adds the knocks of key for the first n slots of the counters
// around now.
func (h *knockHost) allowSlots(t *testing.T, key []byte, now time.Time, n int) {
	t.Helper()
	d, _ := totp.NewDeriver(key, "")
	var els []string
	for _, e := range totp.Window(now, totp.DefaultPeriod, 1, 0) {
		for s := 0; s < n; s++ {
			els = append(els, fmt.Sprintf("%d . %d", h.port, d.ISN(h.port, e.Counter, uint8(s))))
		}
	}
	h.server.MustRun("nft", "add", "element", "inet", "knocktest", "valid", "{ "+strings.Join(els, ", ")+" }")
}

// greetOnce serves the next connection: it sends "greeting\n" and
// returns on the channel what the client sent until it closed (at most 100
// bytes, 20 s).
func (h *knockHost) greetOnce() <-chan string {
	got := make(chan string, 1)
	go func() {
		c := <-h.accepted
		defer c.Close()
		c.Write([]byte("greeting\n"))
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		all, _ := io.ReadAll(io.LimitReader(c, 100))
		got <- string(all)
	}()
	return got
}

// drainAccepted returns how many connections the server accepted so far, and
// closes them.
func (h *knockHost) drainAccepted() int {
	n := 0
	for {
		select {
		case c := <-h.accepted:
			c.Close()
			n++
		default:
			return n
		}
	}
}

// sudo runs `sudo -n seqknock ARGS` as the user in the client namespace,
// with empty stdin.
func (b *sudoBed) sudo(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return b.sudoBin(t, b.bin, args...)
}

// sudoBin is sudo with another binary the user may run under sudo.
func (b *sudoBed) sudoBin(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := b.u.Command(b.h.client, "sudo", append([]string{"-n", bin}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(""), &o, &e
	// Its own process group, so a run that hangs (as the old code's relay
	// through an attack did) is ended whole: sudo, seqknock, the program.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(20*time.Second, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	timer.Stop()
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("sudo %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return o.String(), e.String(), code
}

// fileState is what must not change about a root-owned path.
type fileState struct {
	exists    bool
	data      string
	uid, gid  uint32
	mode      os.FileMode
	isSymlink bool
}

func stateOf(path string) fileState {
	fi, err := os.Lstat(path)
	if err != nil {
		return fileState{}
	}
	st := fi.Sys().(*syscall.Stat_t)
	s := fileState{exists: true, uid: st.Uid, gid: st.Gid, mode: fi.Mode(), isSymlink: fi.Mode()&os.ModeSymlink != 0}
	if fi.Mode().IsRegular() {
		b, _ := os.ReadFile(path)
		s.data = string(b)
	}
	return s
}

// treeState records every path under dir.
func treeState(dir string) map[string]fileState {
	m := map[string]fileState{}
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		m[p] = stateOf(p)
		return nil
	})
	return m
}

func checkOneLine(t *testing.T, what, stderr string, code int, wantCode int, want string) {
	t.Helper()
	if code != wantCode || !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "seqknock: ") {
		t.Errorf("%s: exit %d, stderr %q; want exit %d and one line with %q", what, code, stderr, wantCode, want)
	}
}

func checkUnchanged(t *testing.T, what string, before map[string]fileState, dir string) {
	t.Helper()
	after := treeState(dir)
	for p, s := range before {
		if after[p] != s {
			t.Errorf("%s: %s changed: %+v, was %+v", what, p, after[p], s)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s was created (%+v)", what, p, after[p])
		}
	}
}

// Attack 1: `sudo seqknock exec --user 0 ... -- /bin/sh` must not give a
// root shell: --user is refused under sudo, before any connection.
func TestSudoAttackUserRoot(t *testing.T) {
	b := newSudoBed(t, 150)
	marker := filepath.Join(b.root, "pwned")
	for _, who := range []string{"0", "root"} {
		before := treeState(b.root)
		_, stderr, code := b.sudo(t, "exec", "--user", who, "--key-file", b.key, "--slots", "32", "--syn-timeout", "2s", b.h.link.A4, "2222",
			"--", "sh", "-c", "id -u > "+marker)
		checkOneLine(t, "--user "+who, stderr, code, 2, "--user is for root only")
		checkUnchanged(t, "--user "+who, before, b.root)
		if n := b.h.drainAccepted(); n != 0 {
			t.Errorf("--user %s: the server accepted %d connections", who, n)
		}
	}
}

// Attack 2: the user's state and config paths pointing at root's files
// and directories: seqknock refuses the link (or cannot read the file) and
// changes nothing of root's.
func TestSudoAttackStateAndConfigLinks(t *testing.T) {
	b := newSudoBed(t, 152)
	precious := filepath.Join(b.root, "precious")
	rootDir := filepath.Join(b.root, "dir")
	os.Mkdir(rootDir, 0o755)
	os.MkdirAll(filepath.Join(b.root, "local", "state"), 0o755)
	for _, tc := range []struct {
		name string
		set  func()
		args []string
		want string
	}{
		{"slots.json links to a root file", func() {
			b.u.WriteFile(".local/state/seqknock/.keep", nil, 0o600)
			os.Symlink(precious, filepath.Join(b.u.Home, ".local/state/seqknock/slots.json"))
		}, nil, "slots.json is a symbolic link"},
		{"state dir links to a root dir", func() {
			b.u.WriteFile(".local/state/.keep", nil, 0o600)
			os.Symlink(rootDir, filepath.Join(b.u.Home, ".local/state/seqknock"))
		}, nil, "state/seqknock is a symbolic link"},
		{"~/.local links to a root dir", func() {
			os.Symlink(filepath.Join(b.root, "local"), filepath.Join(b.u.Home, ".local"))
		}, nil, ".local is a symbolic link"},
		{"~/.config links to a root dir with a root-only client.toml", func() {
			os.Rename(filepath.Join(b.u.Home, ".config"), filepath.Join(b.u.Home, "config.saved"))
			os.Symlink(filepath.Join(b.root, "config"), filepath.Join(b.u.Home, ".config"))
		}, []string{}, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range []string{".local", ".config"} {
				if fi, err := os.Lstat(filepath.Join(b.u.Home, p)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
					os.Remove(filepath.Join(b.u.Home, p))
				} else {
					os.RemoveAll(filepath.Join(b.u.Home, ".local"))
				}
			}
			if _, err := os.Lstat(filepath.Join(b.u.Home, "config.saved")); err == nil {
				os.Rename(filepath.Join(b.u.Home, "config.saved"), filepath.Join(b.u.Home, ".config"))
			}
			tc.set()
			for _, p := range []string{".local", ".config", ".local/state", ".local/state/seqknock", ".local/state/seqknock/slots.json"} {
				os.Lchown(filepath.Join(b.u.Home, p), b.u.UID, b.u.GID)
			}
			before := treeState(b.root)
			args := tc.args
			if args == nil {
				args = []string{"--key-file", b.key}
			}
			args = append(append([]string{"proxy", "--slots", "32", "--syn-timeout", "2s"}, args...), b.h.link.A4, "2222")
			_, stderr, code := b.sudo(t, args...)
			checkOneLine(t, tc.name, stderr, code, 1, tc.want)
			if strings.Contains(stderr, "SecretToken") {
				t.Errorf("%s: stderr shows root's file: %q", tc.name, stderr)
			}
			checkUnchanged(t, tc.name, before, b.root)
			if n := b.h.drainAccepted(); n != 0 {
				t.Errorf("%s: the server accepted %d connections", tc.name, n)
			}
		})
	}
}

// Attack 3: reading what only root may read: another user's key (isn
// prints its knocks; proxy knocks with it) and a root-only file given as
// the config (its parse error would show its content).
func TestSudoAttackReadSecrets(t *testing.T) {
	b := newSudoBed(t, 154)
	bob := filepath.Join(b.root, "bob.key")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"isn with bob's key", []string{"isn", "--key-file", bob, "--port", "2222", "--all-slots"}, 1, "isn needs no privilege: run it without sudo"},
		{"proxy with bob's key", []string{"proxy", "--key-file", bob, "--slots", "32", "--syn-timeout", "2s", b.h.link.A4, "2222"}, 1, bob + ": permission denied"},
		{"fdpass with bob's key", []string{"fdpass", "--key-file", bob, "--slots", "32", "--syn-timeout", "2s", b.h.link.A4, "2222"}, 1, bob + ": permission denied"},
		{"root-only config", []string{"proxy", "--config", filepath.Join(b.root, "secret.toml"), "--key-file", b.key, "--slots", "32", b.h.link.A4, "2222"}, 1, "secret.toml: permission denied"},
		{"ssh-config with a root-only config", []string{"ssh-config", "--config", filepath.Join(b.root, "secret.toml"), "host"}, 1, "secret.toml: permission denied"},
	} {
		stdout, stderr, code := b.sudo(t, tc.args...)
		checkOneLine(t, tc.name, stderr, code, tc.code, tc.want)
		if stdout != "" {
			t.Errorf("%s: printed %q", tc.name, stdout)
		}
		if strings.Contains(stderr, "SecretToken") {
			t.Errorf("%s: stderr shows root's file: %q", tc.name, stderr)
		}
		if n := b.h.drainAccepted(); n != 0 {
			t.Errorf("%s: the server accepted %d connections", tc.name, n)
		}
	}
}

// Shell completion offers the hosts of a config: never of one read with
// root's rights.
func TestSudoCompletionReadsNoRootConfig(t *testing.T) {
	b := newSudoBed(t, 164)
	hosts := filepath.Join(b.root, "hosts.toml")
	if out, _ := exec.Command(b.bin, "proxy", "--config", hosts, "", "--generate-bash-completion").Output(); !strings.Contains(string(out), "SecretToken-host") {
		t.Fatalf("root's own completion does not offer the config's host: %q", out)
	}
	stdout, stderr, _ := b.sudo(t, "proxy", "--config", hosts, "", "--generate-bash-completion")
	if strings.Contains(stdout+stderr, "SecretToken") {
		t.Errorf("completion under sudo shows root's config: %q %q", stdout, stderr)
	}
}

// Attack 4: `sudo seqknock keygen -o ROOTFILE --force` must not replace
// root's file, nor create one where only root may.
func TestSudoAttackKeygen(t *testing.T) {
	b := newSudoBed(t, 156)
	for _, args := range [][]string{
		{"keygen", "-o", filepath.Join(b.root, "precious"), "--force"},
		{"keygen", "-o", filepath.Join(b.root, "new.key")},
		{"keygen"},
	} {
		before := treeState(b.root)
		stdout, stderr, code := b.sudo(t, args...)
		checkOneLine(t, strings.Join(args, " "), stderr, code, 1, "keygen needs no privilege: run it without sudo")
		if stdout != "" {
			t.Errorf("%v: printed %q", args, stdout)
		}
		checkUnchanged(t, strings.Join(args, " "), before, b.root)
	}
}

var statusLine = regexp.MustCompile(`(?m)^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapAmb):\s*(.*)$`)

// checkUnprivileged checks /proc status text of a process of user u: every
// id is u's and every capability set is empty.
func checkUnprivileged(t *testing.T, what, status string, u *netnstest.User) {
	t.Helper()
	found := 0
	for _, m := range statusLine.FindAllStringSubmatch(status, -1) {
		found++
		switch m[1] {
		case "Uid", "Gid":
			want := u.UID
			if m[1] == "Gid" {
				want = u.GID
			}
			for _, f := range strings.Fields(m[2]) {
				if f != strconv.Itoa(want) {
					t.Errorf("%s: %s: %s", what, m[1], m[2])
					break
				}
			}
		case "Groups":
			if strings.TrimSpace(m[2]) != strconv.Itoa(u.GID) {
				t.Errorf("%s: Groups: %s, want only %d", what, m[2], u.GID)
			}
		default:
			if m[2] != "0000000000000000" {
				t.Errorf("%s: %s: %s", what, m[1], m[2])
			}
		}
	}
	if found != 7 {
		t.Errorf("%s: %d status lines found in %q", what, found, status)
	}
}

// The legitimate path: the user's own config, key and state, `sudo
// seqknock exec HOST PORT -- PROGRAM`. The program talks over fds 6 and 7
// and holds no uid 0 and no capability; so does every thread of seqknock,
// which waits for it; the state the run wrote is the user's, 0600 in 0700
// directories.
func TestSudoExecAsUser(t *testing.T) {
	b := newSudoBed(t, 158)
	b.u.WriteFile(".config/seqknock/client.toml", []byte("[[host]]\nmatch = \"198.18.*\"\nkey_file = \"~/.config/seqknock/own.key\"\nslots = 32\n"), 0o600)
	// Both builds: a cgo build hands the socket to a fresh image of itself
	// instead of clearing capabilities in-process.
	for _, build := range builds {
		t.Run(build.name, func(t *testing.T) {
			bin := build.build(t, "client/cmd/seqknock")
			if bin != b.bin {
				b.u.AllowSudo(bin)
			}
			got := b.h.greetOnce()
			script := `cat /proc/self/status; echo ==; for s in /proc/$PPID/task/*/status; do cat $s; echo ==; done; ` +
				`echo "$TCPREMOTEIP:$TCPREMOTEPORT"; read line <&6; echo "got $line"; echo "hello from $(id -u)" >&7`
			stdout, stderr, code := b.sudoBin(t, bin, "exec", "--syn-timeout", "2s", b.h.link.A4, "2222", "--", "sh", "-c", script)
			if code != 0 {
				t.Fatalf("exec: exit %d: %s", code, stderr)
			}
			parts := strings.Split(stdout, "==\n")
			if len(parts) < 3 {
				t.Fatalf("program output:\n%s", stdout)
			}
			checkUnprivileged(t, "program", parts[0], b.u)
			for i, p := range parts[1 : len(parts)-1] {
				checkUnprivileged(t, fmt.Sprintf("seqknock thread %d", i), p, b.u)
			}
			if tail := parts[len(parts)-1]; tail != b.h.link.A4+":2222\ngot greeting\n" {
				t.Errorf("program output tail: %q", tail)
			}
			select {
			case s := <-got:
				if s != fmt.Sprintf("hello from %d\n", b.u.UID) {
					t.Errorf("server got %q", s)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("server got nothing")
			}
		})
	}
	for p, mode := range map[string]os.FileMode{".local": 0o700, ".local/state": 0o700, ".local/state/seqknock": 0o700, ".local/state/seqknock/slots.json": 0o600} {
		s := stateOf(filepath.Join(b.u.Home, p))
		if !s.exists || s.uid != uint32(b.u.UID) || s.mode.Perm() != mode || s.isSymlink {
			t.Errorf("%s: %+v, want uid %d mode %o", p, s, b.u.UID, mode)
		}
	}
}

// TestExecBusyFDs: the exec'd program finds the socket on fds 6 and 7 and
// fds 3 to 5 closed, however many descriptors seqknock itself holds below
// and at 6 and 7 (inherited files at 3, 3..4, ... 3..7 push the Go
// runtime's epoll and event descriptors onto each of those numbers), run
// as sudo runs it (SUDO_UID/SUDO_GID of the test user).
func TestExecBusyFDs(t *testing.T) {
	b := newSudoBed(t, 160)
	for busy := 0; busy <= 5; busy++ {
		t.Run(fmt.Sprintf("fds 3..%d busy", 2+busy), func(t *testing.T) {
			done := b.h.greetOnce()
			var extra []*os.File
			for i := 0; i < busy; i++ {
				f, err := os.Open("/dev/null")
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				extra = append(extra, f)
			}
			script := `for f in 3 4 5; do [ -e /proc/self/fd/$f ] && echo "fd $f open"; done; read line <&6; echo "got $line"; echo "back" >&7`
			cmd := b.h.client.Command(b.bin, "exec", "--key-file", b.key, "--slots", "32", "--syn-timeout", "2s", b.h.link.A4, "2222", "--", "sh", "-c", script)
			cmd.Env = []string{"HOME=/root", "PATH=/usr/bin:/bin", "SUDO_UID=" + strconv.Itoa(b.u.UID), "SUDO_GID=" + strconv.Itoa(b.u.GID), "SUDO_USER=" + b.u.Name}
			cmd.ExtraFiles = extra
			out, err := cmd.CombinedOutput()
			if err != nil || string(out) != "got greeting\n" {
				t.Errorf("exec with %d busy fds: %v: %q", busy, err, out)
			}
			select {
			case s := <-done:
				if s != "back\n" {
					t.Errorf("server got %q", s)
				}
			case <-time.After(20 * time.Second):
				t.Error("server got nothing")
			}
		})
	}
}

// Attack: get at the process that holds CAP_NET_ADMIN for the user. The
// image Become starts is the user's own; the kernel keeps the user from
// tracing a thread that holds a capability the user lacks, but only thread
// by thread, and DropPrivileges clears the threads one after another. The
// attacker (testdata/memrace, run as the user) holds the slot file locked
// so that seqknock waits with the capability, checks that /proc/PID/environ is not
// the user's (the process is non-dumpable), then lets it connect and keeps
// trying to open /proc/PID/task/TID/mem read-write while the capability is
// dropped. Against a dumpable process it won (the memory of a process with
// a thread holding CAP_NET_ADMIN, open for writing) in 5 of 12 runs.
func TestSudoCapableProcessSealed(t *testing.T) {
	b := newSudoBed(t, 166)
	atk := netnstest.Build(t, "client/testdata/memrace")
	for i := 0; i < 8; i++ {
		cmd := b.u.Command(b.h.client, atk, "-n", b.bin, "proxy", "--key-file", b.key, "--slots", "32", "--syn-timeout", "2s", b.h.link.A4, "2222")
		var e bytes.Buffer
		cmd.Stderr = &e
		cmd.WaitDelay = 2 * time.Second
		timer := time.AfterFunc(40*time.Second, func() { cmd.Process.Kill() })
		out, err := cmd.Output()
		timer.Stop()
		if err != nil || !strings.HasPrefix(string(out), "target\n") {
			t.Fatalf("run %d: %v: %q %q", i, err, out, e.String())
		}
		if got := strings.Fields(string(out)); len(got) != 2 || got[1] != "sealed" {
			t.Errorf("run %d: the user got at the capable process: %q", i, out)
		}
		b.h.drainAccepted()
	}
}
