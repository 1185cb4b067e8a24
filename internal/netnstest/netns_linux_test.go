//go:build linux

package netnstest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHosts checks what every kernel test relies on: two namespaces joined
// on their own subnet reach each other over IPv4 and IPv6, Do runs code
// with its sockets inside a namespace, tcpdump starts listening, a built
// binary runs there, and everything is gone after the test.
func TestHosts(t *testing.T) {
	RequireRoot(t, "tcpdump")
	var names []string
	t.Run("build", func(t *testing.T) {
		a, b := New(t, "nta"), New(t, "ntb")
		names = []string{a.Name, b.Name}
		if a.FD() <= 0 || !strings.HasPrefix(a.Name, "sknta-") {
			t.Errorf("namespace %q fd %d", a.Name, a.FD())
		}
		l := Connect(t, a, b, 201)
		if l.A4 != "198.18.201.1" || l.B6 != "2001:db8:c9::2" || l.Subnet4 != "198.18.201.0/24" {
			t.Errorf("addresses %+v", l)
		}
		// Do: a listener opened inside b is reachable from a, not from the host.
		var ln net.Listener
		if err := b.Do(func() (err error) { ln, err = net.Listen("tcp", "[::]:7070"); return }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Write([]byte("hi\n"))
				c.Close()
			}
		}()
		_, out := b.StartTcpdump(t, "-l", "-n", "-i", l.BIf, "-c", "1", "tcp port 7070")
		var got string
		if err := a.Do(func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(l.B6, "7070"), 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			got, err = bufio.NewReader(c).ReadString('\n')
			return err
		}); err != nil || got != "hi\n" {
			t.Fatalf("dial from a to b: %q %v", got, err)
		}
		if line, _ := bufio.NewReader(out).ReadString('\n'); !strings.Contains(line, l.A6) {
			t.Errorf("tcpdump saw %q", line)
		}
		if _, err := net.DialTimeout("tcp", "127.0.0.1:7070", 300*time.Millisecond); err == nil {
			t.Error("the namespace's listener is reachable from the host")
		}
		if _, err := a.Run("false"); err == nil {
			t.Error("Run hid a failure")
		}
		bin := Build(t, "scripts/demo/echod")
		if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
			t.Fatalf("built %s: %v", bin, err)
		}
		if out, _ := exec.Command(bin, "-h").CombinedOutput(); !strings.Contains(string(out), "-listen") {
			t.Errorf("built binary: %s", out)
		}
	})
	list, _ := exec.Command("ip", "netns", "list").Output()
	for _, n := range names {
		if strings.Contains(string(list), n) {
			t.Errorf("namespace %s left after the test", n)
		}
	}
}

func TestListingHelpers(t *testing.T) {
	listing := "table inet t {\n\tset valid {\n\t\ttypeof tcp dport . tcp sequence\n\t\telements = { 22 . 1 }\n\t}\n\n" +
		"\tset ports {\n\t\telements = { 22 }\n\t}\n\n\tchain c {\n\t\tcounter packets 3 bytes 180 drop\n\t}\n}\n"
	want := "table inet t {\n\tset valid {\n\t\ttypeof tcp dport . tcp sequence\n\t}\n\n" +
		"\tset ports {\n\t\telements = { 22 }\n\t}\n\n\tchain c {\n\t\tcounter packets 0 bytes 0 drop\n\t}\n}\n"
	if got := NormalizeListing(listing); got != want {
		t.Errorf("NormalizeListing:\n%s\nwant\n%s", got, want)
	}
	if got := DropComments("# a\ntable x\n# b\n"); got != "table x\n" {
		t.Errorf("DropComments: %q", got)
	}
	var b Buffer
	b.Write([]byte("one "))
	b.Write([]byte("two"))
	if b.String() != "one two" {
		t.Errorf("Buffer: %q", b.String())
	}
}

// recTB records what a helper would do to a test instead of doing it.
type recTB struct {
	testing.TB
	fatal, skip string
}

func (r *recTB) Helper()                      {}
func (r *recTB) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }
func (r *recTB) Skipf(f string, args ...any)  { r.skip = fmt.Sprintf(f, args...) }
func (r *recTB) Cleanup(func())               {}
func (r *recTB) Errorf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }

// TestRequireSkipsOrFails: a missing tool skips the test, and under CI=true
// fails it instead, naming the tool.
func TestRequireSkipsOrFails(t *testing.T) {
	t.Setenv("CI", "")
	r := &recTB{TB: t}
	RequireTools(r, "seqknock-no-such-tool")
	if r.fatal != "" || r.skip != "test needs seqknock-no-such-tool" {
		t.Errorf("outside CI: fatal %q skip %q", r.fatal, r.skip)
	}
	t.Setenv("CI", "true")
	r = &recTB{TB: t}
	RequireRoot(r, "seqknock-no-such-tool")
	// (A real Fatalf would stop there; this one returns, so skip is set too.)
	if !strings.HasSuffix(r.fatal, "seqknock-no-such-tool (CI=true: not skipping)") {
		t.Errorf("under CI: fatal %q skip %q", r.fatal, r.skip)
	}
	r = &recTB{TB: t}
	RequireTools(r, "sh")
	if r.fatal != "" || r.skip != "" {
		t.Errorf("installed tool: fatal %q skip %q", r.fatal, r.skip)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveBuilds()
	os.Exit(code)
}
