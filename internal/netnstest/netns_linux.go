//go:build linux

package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// RequireRoot skips t unless it runs as root with the tools named; under
// CI=true it fails instead, so CI never skips silently.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	require(t, "kernel test", append(missing, lookPath(append([]string{"ip", "nft"}, tools...))...))
}

// RequireTools skips t unless the tools named are installed (root or not);
// under CI=true it fails instead.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	require(t, "test", lookPath(tools))
}

// lookPath returns the tools that are not installed.
func lookPath(tools []string) []string {
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	return missing
}

func require(t testing.TB, what string, missing []string) {
	t.Helper()
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s needs %s (CI=true: not skipping)", what, strings.Join(missing, ", "))
	}
	t.Skipf("%s needs %s", what, strings.Join(missing, ", "))
}

// NS is one network namespace.
type NS struct {
	Name string
	fd   int
	t    testing.TB
}

func suffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// New creates a namespace named "sk<role>-<random>" with loopback up.
func New(t testing.TB, role string) *NS {
	t.Helper()
	name := fmt.Sprintf("sk%s-%s", role, suffix())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name, fd: -1, t: t}
	t.Cleanup(func() {
		if ns.fd >= 0 {
			unix.Close(ns.fd)
		}
		exec.Command("ip", "netns", "del", name).Run()
	})
	ns.MustRun("ip", "link", "set", "lo", "up")
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	ns.fd = fd
	return ns
}

// FD returns a file descriptor of the namespace.
func (ns *NS) FD() int { return ns.fd }

// Command returns cmd to run inside the namespace.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command in the namespace and returns its combined output.
func (ns *NS) Run(name string, args ...string) (string, error) {
	out, err := ns.Command(name, args...).CombinedOutput()
	return string(out), err
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(name string, args ...string) string {
	ns.t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		ns.t.Fatalf("%s: %s %s: %v: %s", ns.Name, name, strings.Join(args, " "), err, out)
	}
	return out
}

// Do runs fn on a thread switched into the namespace. Sockets fn opens stay
// in the namespace after Do returns.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine
			// instead of serving others from the wrong namespace.
			errc <- fmt.Errorf("restore netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Link is the two ends of a veth pair between two namespaces, with the
// addresses given to each end.
type Link struct {
	A, B         *NS
	A4, B4       string // IPv4 addresses, without prefix length
	A6, B6       string // IPv6 addresses
	AIf, BIf     string // interface names
	Subnet4      string // e.g. 198.18.7.0/24
	Subnet6      string // e.g. 2001:db8:7::/64
	subnetNumber int
}

// Connect joins a and b with a veth pair on subnet n (0..255):
// 198.18.n.1/24 and 2001:db8:n::1/64 on a, .2 and ::2 on b. Give each test
// its own n so packages can run in parallel.
func Connect(t testing.TB, a, b *NS, n int) *Link {
	t.Helper()
	if n < 0 || n > 255 {
		t.Fatalf("subnet %d out of range", n)
	}
	l := &Link{
		A: a, B: b, subnetNumber: n,
		A4: fmt.Sprintf("198.18.%d.1", n), B4: fmt.Sprintf("198.18.%d.2", n),
		A6: fmt.Sprintf("2001:db8:%x::1", n), B6: fmt.Sprintf("2001:db8:%x::2", n),
		Subnet4: fmt.Sprintf("198.18.%d.0/24", n), Subnet6: fmt.Sprintf("2001:db8:%x::/64", n),
	}
	s := suffix()
	l.AIf, l.BIf = "ska"+s, "skb"+s
	if out, err := exec.Command("ip", "link", "add", l.AIf, "netns", a.Name, "type", "veth", "peer", "name", l.BIf, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip link add veth: %v: %s", err, out)
	}
	// Deleting the namespaces removes the pair; this covers a failure
	// between here and their cleanup.
	t.Cleanup(func() { a.Run("ip", "link", "del", l.AIf) })
	for _, side := range []struct {
		ns     *NS
		ifn    string
		v4, v6 string
	}{{a, l.AIf, l.A4, l.A6}, {b, l.BIf, l.B4, l.B6}} {
		side.ns.MustRun("ip", "addr", "add", side.v4+"/24", "dev", side.ifn)
		side.ns.MustRun("ip", "-6", "addr", "add", side.v6+"/64", "dev", side.ifn, "nodad")
		side.ns.MustRun("ip", "link", "set", side.ifn, "up")
	}
	return l
}

// StartTcpdump starts tcpdump in the namespace with args and returns once it
// listens, with its standard output. It is killed when the test ends, if it
// has not exited by then.
func (ns *NS) StartTcpdump(t testing.TB, args ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := ns.Command("tcpdump", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errb := &Buffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tcpdump: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(errb.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump did not start: %s", errb)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, out
}
