//go:build linux

package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
)

// TestSSHThroughBroker: the client without sudo or setcap. A broker
// (`seqknock broker`, as root, its group made for the test) serves; a real
// unprivileged user in that group runs real OpenSSH with a plain
// `seqknock proxy` (no file capability) as ProxyCommand, both builds,
// through the seqknockd-protected sshd: while connected, every thread of
// that seqknock holds no capability (CapPrm, CapEff 0) and its uid is the
// user's; the SYN the server sees carries a knock derived from the user's
// key. A user outside the group gets the one-line refusal and sends no SYN.
func TestSSHThroughBroker(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 170, 2*time.Second)
	netnstest.RequireRoot(t, "useradd", "userdel", "groupadd", "setpriv")
	w.startDaemon()
	g := netnstest.NewGroup(t)
	dir, err := os.MkdirTemp("", "seqknock-e2e-broker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "run", "broker.sock")
	startBroker(t, w.seqknock, sock, g.Name)

	key, _ := os.ReadFile(w.path("alice.key"))
	id, _ := os.ReadFile(w.path("id"))
	setup := func(u *netnstest.User) {
		u.WriteFile(".config/seqknock/alice.key", key, 0o600)
		u.WriteFile(".config/seqknock/client.toml", []byte(fmt.Sprintf(
			"broker = %q\n[[host]]\nmatch = \"198.18.*\"\nport = 22\nkey_file = \"~/.config/seqknock/alice.key\"\nrealm = \"lab\"\nperiod = %q\n",
			sock, w.period.String())), 0o600)
		u.WriteFile(".ssh/id", id, 0o600)
	}
	member, outsider := netnstest.NewUser(t), netnstest.NewUser(t)
	member.Join(g)
	setup(member)
	setup(outsider)
	sshCmd := func(ctx context.Context, u *netnstest.User, bin string, command ...string) *exec.Cmd {
		args := []string{"-F", "/dev/null", "-i", filepath.Join(u.Home, ".ssh/id"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectionAttempts=1",
			"-o", "ConnectTimeout=8", "-o", "LogLevel=ERROR",
			"-o", "ProxyCommand=" + bin + " proxy --syn-timeout 1s %h %p", "root@" + w.cl.A4}
		cmd := u.Command(w.cli, "ssh", append(args, command...)...)
		go func() {
			<-ctx.Done()
			if cmd.Process != nil {
				cmd.Process.Kill()
			}
		}()
		return cmd
	}

	syns := startCapture(t, w.srv, w.cl.AIf, nil, "tcp dst port 22 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn")
	start := time.Now()
	builds := []struct{ name, bin string }{{"static", w.seqknock}, {"cgo", netnstest.BuildCgo(t, "client/cmd/seqknock")}}
	for _, b := range builds {
		t.Run("member "+b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			cmd := sshCmd(ctx, member, b.bin, "echo ready; read line; echo got $line")
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			stderr := &netnstest.Buffer{}
			cmd.Stderr = stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Wait() }()
			r := bufio.NewReader(stdout)
			if l, err := r.ReadString('\n'); err != nil || l != "ready\n" {
				t.Fatalf("ssh as %s through the broker: %q %v: %s", member.Name, l, err, stderr)
			}
			// The ProxyCommand's seqknock, connected and relaying.
			pid := findProxy(t, member.UID, b.bin)
			tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
			if len(tasks) == 0 {
				t.Fatalf("no threads of seqknock %d", pid)
			}
			for _, st := range tasks {
				s, _ := os.ReadFile(st)
				for _, l := range strings.Split(string(s), "\n") {
					f := strings.Fields(l)
					if len(f) < 2 {
						continue
					}
					switch f[0] {
					case "CapPrm:", "CapEff:", "CapAmb:":
						if f[1] != "0000000000000000" {
							t.Errorf("%s: %s", st, l)
						}
					case "Uid:":
						for _, id := range f[1:] {
							if id != strconv.Itoa(member.UID) {
								t.Errorf("%s: %s", st, l)
							}
						}
					}
				}
			}
			fmt.Fprintln(stdin, "hello")
			if l, err := r.ReadString('\n'); err != nil || l != "got hello\n" {
				t.Fatalf("session: %q %v: %s", l, err, stderr)
			}
		})
	}

	// Outside the group: one line naming both fixes (and the broker's
	// group, g, not the default one), exit status 255 from ssh, no SYN. The socket's mode keeps the outsider from the broker
	// at all; with the socket open to everyone, the broker refuses itself.
	for _, mode := range []os.FileMode{0o660, 0o666} {
		os.Chmod(sock, mode)
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		out, err := sshCmd(ctx, outsider, w.seqknock, "echo", "should-not-run").CombinedOutput()
		cancel()
		want := "the broker at " + sock + " refused: permission denied"
		if mode == 0o666 {
			want = "the broker at " + sock + " refused: uid " + strconv.Itoa(outsider.UID) + " is neither root nor in group " + g.Name
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err == nil || strings.Count(string(out), "seqknock: ") != 1 || !strings.HasPrefix(lines[0], "seqknock: setting the TCP initial sequence number needs CAP_NET_ADMIN, and "+want) ||
			!strings.Contains(lines[0], "setcap cap_net_admin+ep") || !strings.Contains(lines[0], "join its group ("+g.Name+")") || strings.Contains(string(out), "should-not-run") {
			t.Errorf("outsider, socket mode %o: %v:\n%s", mode, err, out)
		}
	}
	os.Chmod(sock, 0o660)

	// Exactly the member's SYNs, each carrying a knock of alice's key.
	lines := syns.stop()
	d, _ := totp.NewDeriver(aliceKey, "lab")
	valid := map[uint32]bool{}
	for c := totp.Counter(start, w.period) - 1; c <= totp.Counter(time.Now(), w.period)+1; c++ {
		for s := uint8(0); s < totp.DefaultSlots; s++ {
			valid[d.ISN(22, c, s)] = true
		}
	}
	seqRE := regexp.MustCompile(`Flags \[S\], seq (\d+),`)
	var seen int
	for _, l := range lines {
		m := seqRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		seen++
		n, _ := strconv.ParseUint(m[1], 10, 32)
		if !valid[uint32(n)] {
			t.Errorf("SYN with sequence number %s, not a knock of the user's key: %s", m[1], l)
		}
	}
	if seen != len(builds) {
		t.Errorf("%d SYNs seen, want %d (one per member run, none from the outsider):\n%s", seen, len(builds), strings.Join(lines, "\n"))
	}
}

// findProxy returns the pid of the `BIN proxy` process of uid.
func findProxy(t *testing.T, uid int, bin string) int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _ := exec.Command("pgrep", "-u", strconv.Itoa(uid), "-f", "^"+regexp.QuoteMeta(bin)+" proxy").Output()
		if f := strings.Fields(string(out)); len(f) == 1 {
			pid, _ := strconv.Atoi(f[0])
			return pid
		}
	}
	t.Fatalf("no seqknock proxy process of uid %d", uid)
	return 0
}

// startBroker starts bin's broker on sock for group's members, waits until
// it serves, and stops it when the test ends; its log is returned.
func startBroker(t *testing.T, bin, sock, group string) *netnstest.Buffer {
	t.Helper()
	broker := exec.Command(bin, "broker", "--listen", sock, "--group", group)
	log := &netnstest.Buffer{}
	broker.Stderr = log
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Process.Kill(); broker.Wait() })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), "broker serving"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("broker did not start: %s", log)
		}
	}
	return log
}
