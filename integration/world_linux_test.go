//go:build linux

package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

func TestMain(m *testing.M) {
	// The seqknockd binaries the tests run keep no state file: the default
	// is a path on the host, shared by every test.
	os.Setenv("SEQKNOCKD_STATE", "none")
	// Their run locks go to a temp dir, not the host's /run.
	runDir, err := os.MkdirTemp("", "seqknockd-run-")
	if err != nil {
		panic(err)
	}
	os.Setenv("SEQKNOCKD_RUNTIME_DIR", runDir)
	code := m.Run()
	os.RemoveAll(runDir)
	netnstest.RemoveBuilds()
	os.Exit(code)
}

var (
	aliceKey = []byte("e2e-alice-key-0123456789abcdefgh")
	otherKey = []byte("e2e-other-key-0123456789abcdefgh")
)

// world is a server namespace with sshd protected by `seqknockd run`, a
// client namespace and an attacker namespace, each joined to the server.
type world struct {
	t             testing.TB
	srv, cli, atk *netnstest.NS
	cl, al        *netnstest.Link
	dir           string
	seqknock      string
	seqknockd     string
	sshd          *exec.Cmd
	daemon        *exec.Cmd
	daemonLog     *netnstest.Buffer
	period        time.Duration
	// sshFrom is the namespace ssh runs in; the client's when nil.
	sshFrom *netnstest.NS
}

const serverConfig = `period = "%s"
tolerance = 1
realm = "%s"
[[service]]
port = 22
[[user]]
name = "alice"
key_file = "alice.key"
`

func newWorld(t testing.TB, subnet int, period time.Duration) *world {
	t.Helper()
	netnstest.RequireRoot(t, "sshd", "ssh", "ssh-keygen", "tcpdump")
	w := &world{t: t, period: period, daemonLog: &netnstest.Buffer{}}
	w.seqknock = netnstest.Build(t, "client/cmd/seqknock")
	w.seqknockd = netnstest.Build(t, "server/cmd/seqknockd")
	dir, err := os.MkdirTemp("", "seqknock-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	w.dir = dir
	w.srv, w.cli, w.atk = netnstest.New(t, "esrv"), netnstest.New(t, "ecli"), netnstest.New(t, "eatk")
	w.cl = netnstest.Connect(t, w.srv, w.cli, subnet)
	w.al = netnstest.Connect(t, w.srv, w.atk, subnet+1)
	// Let spoofed packets reach the firewall instead of the reverse path
	// filter, so a replay test proves what the knock rules do.
	for _, k := range []string{"all", "default", w.al.AIf} {
		w.srv.Run("sysctl", "-qw", "net.ipv4.conf."+k+".rp_filter=0")
	}
	w.writeKey("alice.key", aliceKey)
	w.writeKey("other.key", otherKey)
	w.writeConfig("lab")
	w.startSSHD()
	return w
}

func (w *world) path(name string) string { return filepath.Join(w.dir, name) }

func (w *world) writeKey(name string, key []byte) {
	w.t.Helper()
	if err := os.WriteFile(w.path(name), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) writeConfig(realm string) {
	w.t.Helper()
	cfg := fmt.Sprintf(serverConfig, w.period, realm)
	if err := os.WriteFile(w.path("seqknockd.toml"), []byte(cfg), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) startSSHD() {
	t := w.t
	t.Helper()
	os.MkdirAll("/run/sshd", 0o755) // sshd's privilege separation directory
	for _, k := range []string{"hostkey", "id"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", w.path(k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, _ := os.ReadFile(w.path("id.pub"))
	os.WriteFile(w.path("authorized_keys"), pub, 0o600)
	conf := fmt.Sprintf(`Port 22
ListenAddress 0.0.0.0
ListenAddress ::
HostKey %[1]s/hostkey
PidFile %[1]s/sshd.pid
AuthorizedKeysFile %[1]s/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
LogLevel ERROR
`, w.dir)
	os.WriteFile(w.path("sshd_config"), []byte(conf), 0o600)
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		t.Fatal(err)
	}
	// sshd in a mount namespace of its own where root's shell startup
	// files read as empty: a session's bash sources ~/.bashrc, and what a
	// host's root keeps there (a pyenv rehash, say) must not write into
	// the sessions' output.
	w.sshd = w.srv.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`for f in /root/.bashrc /root/.profile /root/.bash_profile /root/.bash_login; do [ -e "$f" ] && mount --bind /dev/null "$f"; done; exec "$0" "$@"`,
		sshd, "-D", "-e", "-f", w.path("sshd_config"))
	w.sshd.Stderr = &netnstest.Buffer{}
	if err := w.sshd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.sshd.Process.Kill(); w.sshd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := w.srv.Run("ss", "-Hltn", "sport = :22")
		if strings.Count(out, "LISTEN") >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen: %s", w.sshd.Stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startDaemon runs `seqknockd run` and waits for its first sync.
func (w *world) startDaemon(extra ...string) {
	t := w.t
	t.Helper()
	before := strings.Count(w.daemonLog.String(), "msg=sync")
	args := append([]string{"--config", w.path("seqknockd.toml"), "run"}, extra...)
	w.daemon = w.srv.Command(w.seqknockd, args...)
	w.daemon.Stderr = w.daemonLog
	if err := w.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	d := w.daemon
	t.Cleanup(func() {
		if d.ProcessState == nil {
			d.Process.Kill()
			d.Wait()
		}
	})
	w.waitLog("msg=sync", before+1)
}

func (w *world) stopDaemon() {
	w.t.Helper()
	w.daemon.Process.Signal(syscall.SIGTERM)
	if err := w.daemon.Wait(); err != nil {
		w.t.Fatalf("seqknockd run exit: %v\n%s", err, w.daemonLog)
	}
}

// waitLog waits until the daemon log has n lines containing s.
func (w *world) waitLog(s string, n int) {
	w.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(w.daemonLog.String(), s) < n {
		if time.Now().After(deadline) {
			w.t.Fatalf("daemon log never had %d× %q:\n%s", n, s, w.daemonLog)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sshArgs are the OpenSSH client options for a test: no user config, the
// test's key and known hosts, no prompts, one connection attempt.
func (w *world) sshArgs(proxy string) []string {
	return []string{
		"-F", "/dev/null", "-i", w.path("id"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=" + w.path("known_hosts"),
		"-o", "ConnectionAttempts=1", "-o", "ConnectTimeout=8", "-o", "LogLevel=ERROR",
		"-o", "ProxyCommand=" + proxy,
	}
}

// proxyCmd is the ProxyCommand for `seqknock VERB` with extra flags.
func (w *world) proxyCmd(verb string, flags ...string) string {
	base := []string{w.seqknock, verb, "--key-file", w.path("alice.key"), "--realm", "lab",
		"--period", w.period.String(), "--syn-timeout", "1s"}
	return strings.Join(append(append(base, flags...), "%h", "%p"), " ")
}

// ssh runs the OpenSSH client in the client namespace.
func (w *world) ssh(ctx context.Context, proxy string, fdpass bool, host string, command ...string) *exec.Cmd {
	args := w.sshArgs(proxy)
	if fdpass {
		args = append(args, "-o", "ProxyUseFdpass=yes")
	}
	args = append(args, "root@"+host)
	args = append(args, command...)
	from := w.cli
	if w.sshFrom != nil {
		from = w.sshFrom
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", from.Name, "ssh"}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+w.path("state"))
	return cmd
}

func (w *world) sshRun(proxy string, fdpass bool, host string, command ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	out, err := w.ssh(ctx, proxy, fdpass, host, command...).CombinedOutput()
	return string(out), err
}

// session is a long-running ssh session that echoes lines back.
type session struct {
	cmd *exec.Cmd
	in  *os.File
	out *bufioReader
}

func (w *world) openSession() *session {
	w.t.Helper()
	return w.openSessionVia(w.proxyCmd("proxy"), w.cl.A4)
}

// openSessionVia is openSession through proxy to host.
func (w *world) openSessionVia(proxy, host string) *session {
	w.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w.t.Cleanup(cancel)
	cmd := w.ssh(ctx, proxy, false, host, "while read l; do echo \"echo:$l\"; done")
	inR, inW, _ := os.Pipe()
	cmd.Stdin = inR
	outR, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	cmd.Stderr = &netnstest.Buffer{}
	// ssh and its ProxyCommand in a process group of their own, all
	// killed at the end: a relay whose connection was reset on the
	// server's side alone would wait for TCP's timeouts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	inR.Close()
	s := &session{cmd: cmd, in: inW, out: newBufioReader(outR)}
	w.t.Cleanup(func() { inW.Close(); syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	s.check(w.t, "hello")
	return s
}

// check sends a line and expects it echoed within a few seconds.
func (s *session) check(t testing.TB, line string) {
	t.Helper()
	fmt.Fprintln(s.in, line)
	got, err := s.out.readLine(10 * time.Second)
	if err != nil || got != "echo:"+line {
		t.Fatalf("session: sent %q, got %q (%v); ssh stderr: %s", line, got, err, s.cmd.Stderr)
	}
}

// plainConnect tries a TCP connection without a knock from ns.
func plainConnect(ns *netnstest.NS, addr string, timeout time.Duration) error {
	return ns.Do(func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "22"), timeout)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// behindRouter puts a client namespace (role cliRole) behind a router
// namespace (rtrRole) that forwards between it and the server: up links
// server and router (subnet upNet), down links router and client
// (downNet). With masquerade the router rewrites the client's address
// and source ports (masquerade random); without it the server routes the
// client's subnet back through the router.
func (w *world) behindRouter(rtrRole, cliRole string, upNet, downNet int, masquerade bool) (rtr, cli *netnstest.NS, up, down *netnstest.Link) {
	t := w.t
	rtr, cli = netnstest.New(t, rtrRole), netnstest.New(t, cliRole)
	up = netnstest.Connect(t, w.srv, rtr, upNet)
	down = netnstest.Connect(t, rtr, cli, downNet)
	rtr.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	if masquerade {
		nat := rtr.Command("nft", "-f", "-")
		nat.Stdin = strings.NewReader(fmt.Sprintf("table ip nat {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname %q masquerade random\n }\n}\n", up.BIf))
		if out, err := nat.CombinedOutput(); err != nil {
			t.Fatalf("nat: %v: %s", err, out)
		}
	} else {
		w.srv.MustRun("ip", "route", "add", down.Subnet4, "via", up.B4)
	}
	cli.MustRun("ip", "route", "add", "default", "via", down.A4)
	return rtr, cli, up, down
}
