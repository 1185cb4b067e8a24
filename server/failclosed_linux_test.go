//go:build linux

package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/netnstest"
)

// The fail-closed harness: a real `seqknockd run` in a server namespace
// with a service (a python3 listener, another process, on port 22 over
// IPv4 and IPv6), a client namespace that knocks and an attacker
// namespace that sends plain connects. An event test (FailClosedBed.Event)
// keeps plain connects going in a tight loop during the event and for
// FailClosedAfter after it, and counts those that got in; a knocked
// session opened before the event must still carry data after it.
// Another test adds its own events with NewFailClosedBed and Event.

// FailClosedAfter is how long plain connects go on after an event.
const FailClosedAfter = 2 * time.Second

// failClosedListener is the service: a plain TCP listener on 0.0.0.0 and
// [::] (v6only), on the port its first argument names, that greets each connection with "hello\n" and
// echoes what it reads. It prints "ready" once it listens.
const failClosedListener = `
import socket, select, sys, threading
port = int(sys.argv[1])
def sock(fam, addr):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    s.listen(512)
    return s
ls = [sock(socket.AF_INET, "0.0.0.0"), sock(socket.AF_INET6, "::")]
print("ready", flush=True)
def serve(c):
    try:
        c.sendall(b"hello\n")
        while True:
            d = c.recv(64)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    finally:
        c.close()
while True:
    r, _, _ = select.select(ls, [], [])
    for s in r:
        try:
            c, _ = s.accept()
        except OSError:
            continue
        threading.Thread(target=serve, args=(c,), daemon=True).start()
`

// FailClosedBed is one server, client and attacker namespace with a
// daemon and a service.
type FailClosedBed struct {
	t             *testing.T
	Srv, Cli, Atk *netnstest.NS
	CL, AL        *netnstest.Link
	K             Kernel
	Cfg           *Config
	bin, dir      string
	daemon        *exec.Cmd
	Log           *netnstest.Buffer
	service       *exec.Cmd
	slot          atomic.Int64
	worstBack     time.Duration // the longest knockAfter waited
	back          chan time.Duration
}

const failClosedConfig = `period = "30s"
tolerance = 1
slots = 128
realm = "lab"
guess_limit = "0"
guess_global_limit = "0"
[[service]]
port = 22
[[user]]
name = "alice"
key_file = "alice.key"
`

// NewFailClosedBed makes the namespaces on subnets subnet and subnet+1,
// starts the service and the daemon, and waits until the table is in and
// the listeners are locked. The limits are off, so the attacker's flood
// is judged by the table's knock lookup and the lock alone.
func NewFailClosedBed(t *testing.T, subnet int) *FailClosedBed {
	t.Helper()
	netnstest.RequireRoot(t, "python3")
	b := &FailClosedBed{t: t, Srv: netnstest.New(t, "fsrv"), Cli: netnstest.New(t, "fcli"), Atk: netnstest.New(t, "fatk"), dir: t.TempDir()}
	b.CL = netnstest.Connect(t, b.Srv, b.Cli, subnet)
	b.AL = netnstest.Connect(t, b.Srv, b.Atk, subnet+1)
	b.K = NewKernel(b.Srv.FD())
	os.Chmod(b.dir, 0o700) // the state directory: root's, mode 0700
	b.bin = netnstest.Build(t, "server/cmd/seqknockd")
	os.WriteFile(filepath.Join(b.dir, "alice.key"), []byte(base64.StdEncoding.EncodeToString(aliceKey)+"\n"), 0o600)
	path := filepath.Join(b.dir, "seqknockd.toml")
	os.WriteFile(path, []byte(failClosedConfig), 0o600)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	b.Cfg = cfg
	b.StartService()
	b.StartDaemon()
	return b
}

// StartService starts the service (again) and waits until it listens.
func (b *FailClosedBed) StartService() {
	b.t.Helper()
	b.service = startService(b.t, b.Srv, 22)
}

// startService starts failClosedListener on port in ns and waits until
// it listens.
func startService(t testing.TB, ns *netnstest.NS, port int) *exec.Cmd {
	t.Helper()
	cmd := ns.Command("python3", "-c", failClosedListener, fmt.Sprint(port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	startGroup(t, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("service: %q, %v", line, err)
	}
	return cmd
}

// StopService kills the service and waits until it is gone.
func (b *FailClosedBed) StopService() {
	killGroup(b.service)
}

// startGroup starts cmd in a process group of its own, killed whole (a
// python3 wrapper's children too) when the test ends.
func startGroup(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killGroup(cmd) })
}

// killGroup kills cmd's process group and waits for cmd.
func killGroup(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
}

// StatePath is the daemon's state file (see freshStatePath).
func (b *FailClosedBed) StatePath() string {
	b.t.Helper()
	return freshStatePath(b.t, b.dir, b.Cfg.Table)
}

// StartDaemon starts `seqknockd run` and waits until the table is in
// and every listener is locked.
func (b *FailClosedBed) StartDaemon() {
	b.t.Helper()
	b.Log = &netnstest.Buffer{}
	// The state directory must be root's and closed to others; b.dir
	// may be open for the listener's user.
	cmd := b.Srv.Command(b.bin, "--config", b.Cfg.Path, "run", "--audit=false", "--state", b.StatePath())
	cmd.Stdout, cmd.Stderr = b.Log, b.Log
	startGroup(b.t, cmd)
	b.daemon = cmd
	if d, ok := b.WaitInForce(10 * time.Second); !ok {
		b.t.Fatalf("the daemon did not put its table in and lock the listeners within %v:\n%s", d, b.Log)
	}
}

// Signal sends sig to the daemon (SIGKILL: and waits until it is gone).
func (b *FailClosedBed) Signal(sig syscall.Signal) {
	b.t.Helper()
	if err := b.daemon.Process.Signal(sig); err != nil {
		b.t.Fatal(err)
	}
	if sig == syscall.SIGKILL {
		b.daemon.Wait()
	}
}

// Locked reports whether every listener of the protected port is locked
// (and there is one).
func (b *FailClosedBed) Locked() bool {
	ls, err := LockedListeners(b.K, b.Cfg)
	if err != nil || len(ls) == 0 {
		return false
	}
	for _, l := range ls {
		if !l.Locked {
			return false
		}
	}
	return true
}

// WaitInForce waits, polling every 2 ms, until the daemon's table is
// current and every listener locked; it returns how long that took.
func (b *FailClosedBed) WaitInForce(limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < limit {
		if live, err := b.K.Table.ReadCounters(b.Cfg.Table); err == nil && live.Exists && live.RulesCurrent && b.Locked() {
			return time.Since(start), true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start), false
}

// Nft runs nft in the server namespace with args, or with file's text on
// its standard input when args is nil.
func (b *FailClosedBed) Nft(file string, args ...string) {
	b.t.Helper()
	cmd := b.Srv.Command("nft", append([]string{"-f", "-"}, args...)...)
	if args != nil {
		cmd = b.Srv.Command("nft", args...)
	} else {
		cmd.Stdin = strings.NewReader(file)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Fatalf("nft %v: %v: %s", args, err, out)
	}
}

// Session is a knocked connection to the service.
type Session struct {
	c  net.Conn
	br *bufio.Reader
}

// Knock makes a knocked connection from the client namespace (IPv6 when
// v6) with a fresh slot, sending one SYN (no retransmission) and reading
// the greeting.
func (b *FailClosedBed) Knock(v6 bool) (*Session, error) {
	addr := b.CL.A4
	if v6 {
		addr = b.CL.A6
	}
	return knockSession(b.Cli, addr, 22, int(b.slot.Add(1)%128))
}

// knockSession makes a knocked connection from ns to addr and port with
// alice's knock of slot, sending one SYN, and reads the greeting.
func knockSession(ns *netnstest.NS, addr string, port uint16, slot int) (*Session, error) {
	d := client.Dialer{Key: aliceKey, Realm: "lab", Slots: 1, SynTimeout: 900 * time.Millisecond, Resolve: literal,
		Reserve: func(string, uint64, int) (int, error) { return slot, nil }}
	var conn *net.TCPConn
	if err := ns.Do(func() (err error) { conn, err = d.Dial(context.Background(), addr, port); return }); err != nil {
		return nil, err
	}
	s := &Session{c: conn, br: bufio.NewReader(conn)}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, err := s.br.ReadString('\n'); err != nil || line != "hello\n" {
		conn.Close()
		return nil, fmt.Errorf("knocked, but no greeting: %q, %v", line, err)
	}
	return s, nil
}

// Ping sends a line and reads its echo.
func (s *Session) Ping(line string) error {
	s.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := s.c.Write([]byte(line + "\n")); err != nil {
		return err
	}
	got, err := s.br.ReadString('\n')
	if err == nil && got != line+"\n" {
		err = fmt.Errorf("echo %q", got)
	}
	return err
}

// Close closes the session.
func (s *Session) Close() { s.c.Close() }

// PlainFlood sends plain connects from the attacker namespace, over IPv4
// and IPv6 alike, in a tight loop (4 at a time, each given up after
// 100 ms) until stop is closed, and returns how many got in.
func (b *FailClosedBed) PlainFlood(stop <-chan struct{}) (in, tries int) {
	var wg sync.WaitGroup
	var nIn, nTries atomic.Int64
	for i := 0; i < 4; i++ {
		addr := net.JoinHostPort(b.AL.A4, "22")
		if i%2 == 1 {
			addr = net.JoinHostPort(b.AL.A6, "22")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Atk.Do(func() error {
				d := net.Dialer{Timeout: 100 * time.Millisecond}
				for {
					select {
					case <-stop:
						return nil
					default:
					}
					nTries.Add(1)
					if c, err := d.Dial("tcp", addr); err == nil {
						nIn.Add(1)
						c.Close()
					}
				}
			})
		}()
	}
	wg.Wait()
	return int(nIn.Load()), int(nTries.Load())
}

// Event runs event reps times: each time it opens a knocked session,
// floods with plain connects during event and for FailClosedAfter after
// it, checks that the session still carries data, then calls recover
// (which brings the daemon back to a table in force, or fails). It
// returns the plain connects that got in and the sessions lost, over all
// repetitions, and prints them.
func (b *FailClosedBed) Event(name string, reps int, event, recover func(rep int)) (in, lost int) {
	b.t.Helper()
	tries := 0
	for rep := 0; rep < reps; rep++ {
		s, err := b.Knock(rep%2 == 1)
		if err != nil {
			b.t.Fatalf("%s rep %d: knock before the event: %v\n%s", name, rep, err, b.Log)
		}
		stop := make(chan struct{})
		type count struct{ in, tries int }
		done := make(chan count, 1)
		go func() { i, n := b.PlainFlood(stop); done <- count{i, n} }()
		time.Sleep(20 * time.Millisecond) // the flood is on before the event
		event(rep)
		time.Sleep(FailClosedAfter)
		close(stop)
		c := <-done
		in, tries = in+c.in, tries+c.tries
		if err := s.Ping(fmt.Sprintf("%s-%d", strings.ReplaceAll(name, " ", "-"), rep)); err != nil {
			lost++
			b.t.Logf("%s rep %d: the session established before the event is lost: %v", name, rep, err)
		}
		s.Close()
		recover(rep)
	}
	b.t.Logf("%s: %d plain connects of %d got in over %d repetitions; %d sessions of %d lost", name, in, tries, reps, lost, reps)
	return in, lost
}

// freshStatePath returns parent/state/state.json, in a directory of mode
// 0700 as the state check wants (parent may be open for a test user).
// Until a daemon saved its own, the file holds a state of table that says
// "nothing spent yet", so a daemon's first knocks work at once: without
// one it counts the window so far as spent.
func freshStatePath(t testing.TB, parent, table string) string {
	t.Helper()
	dir := filepath.Join(parent, "state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "state.json")
	if _, err := os.Stat(path); os.IsNotExist(err) {
		fresh := fmt.Sprintf(`{"version":1,"table":%q,"high_unix_ms":0,"spent":[]}`+"\n", table)
		if err := os.WriteFile(path, []byte(fresh), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return path
}
