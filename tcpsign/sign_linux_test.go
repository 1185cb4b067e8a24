//go:build linux

package tcpsign

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"golang.org/x/sys/unix"
)

var (
	signKey  = []byte("tcpsign-test-key-0123456789abcdef")
	wrongKey = []byte("tcpsign-wrong-key-0123456789abcde")
)

// listener is a stand-in for an unpatched service: python3 listening on
// [::]:port (dual-stack) in ns, as root or, with setpriv, as another user.
// It answers every connection with "hi\n".
func listener(t *testing.T, ns *netnstest.NS, port int, asUser ...string) *exec.Cmd {
	t.Helper()
	script := fmt.Sprintf(`import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", %d))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"hi\n")
    c.close()
`, port)
	args := append(append([]string{}, asUser...), "/usr/bin/python3", "-c", script)
	cmd := ns.Command(args[0], args[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &netnstest.Buffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 10)
	if n, err := out.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "listening") {
		t.Fatalf("listener: %v %q %s", err, buf[:n], cmd.Stderr)
	}
	return cmd
}

// dial connects from ns to addr with key set for the peer (nil: none) and
// reads the greeting; a dropped SYN is a timeout.
func dial(ns *netnstest.NS, addr netip.AddrPort, key []byte) error {
	return ns.Do(func() error {
		d := net.Dialer{Timeout: time.Second}
		if key != nil {
			d.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				c.Control(func(fd uintptr) { serr = SetPeerKey(int(fd), addr.Addr(), key) })
				return serr
			}
		}
		c, err := d.Dial("tcp", addr.String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 3)
		if _, err := c.Read(buf); err != nil || string(buf) != "hi\n" {
			return fmt.Errorf("read greeting: %q %v", buf, err)
		}
		return nil
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sockets returns how many of this process's descriptors are the socket
// with inode.
func sockets(t *testing.T, inode uint32) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); l == "socket:["+strconv.FormatUint(uint64(inode), 10)+"]" {
			n++
		}
	}
	return n
}

// TestSignListener: an unpatched dual-stack listener gets the key from
// outside; then a client with the key connects over IPv4 and IPv6, and
// one without it or with a wrong one gets no SYN-ACK. Sign leaves no
// descriptor behind, does nothing the second time, and never touches a
// listener of another user.
func TestSignListener(t *testing.T) {
	netnstest.RequireRoot(t, "python3", "setpriv")
	ns := netnstest.New(t, "tsign")
	listener(t, ns, 2300)
	v4, v6 := netip.MustParseAddrPort("127.0.0.1:2300"), netip.MustParseAddrPort("[::1]:2300")

	if err := dial(ns, v4, nil); err != nil {
		t.Fatalf("before signing, a plain client: %v", err)
	}
	ls, err := Listeners(ns.FD(), 2300)
	if err != nil || len(ls) != 1 || ls[0].HasKeys() || ls[0].SignedWith(signKey) {
		t.Fatalf("listeners before: %v %v", ls, err)
	}
	res, err := Sign(ns.FD(), 2300, signKey)
	if err != nil || len(res) != 1 || !res[0].Signed || !res[0].Changed || res[0].Err != nil || res[0].PID == 0 {
		t.Fatalf("sign: %+v %v", res, err)
	}
	if n := sockets(t, res[0].Listener.Inode); n != 0 {
		t.Errorf("Sign left %d descriptors of the listener in this process", n)
	}
	ls, err = Listeners(ns.FD(), 2300)
	if err != nil || len(ls) != 1 || !ls[0].SignedWith(signKey) || ls[0].SignedWith(wrongKey) {
		t.Fatalf("listeners after: %v %v", ls, err)
	}
	if s := fmt.Sprintf("%v %#v %+v", ls[0], ls[0], res); strings.Contains(s, string(signKey[:8])) {
		t.Errorf("printing a listener shows the key: %s", s)
	}
	for _, a := range []netip.AddrPort{v4, v6} {
		if err := dial(ns, a, signKey); err != nil {
			t.Errorf("%s with the key: %v", a, err)
		}
		if err := dial(ns, a, nil); !isTimeout(err) {
			t.Errorf("%s without a key: want no SYN-ACK (a timeout), got %v", a, err)
		}
		if err := dial(ns, a, wrongKey); !isTimeout(err) {
			t.Errorf("%s with a wrong key: want no SYN-ACK (a timeout), got %v", a, err)
		}
	}
	res, err = Sign(ns.FD(), 2300, signKey)
	if err != nil || len(res) != 1 || !res[0].Signed || res[0].Changed {
		t.Fatalf("second sign: %+v %v", res, err)
	}

	// A listener of an unprivileged user on a port the config names is
	// left alone: no key, and the user's process is not reached into.
	listener(t, ns, 2301, "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")
	res, err = Sign(ns.FD(), 2301, signKey)
	if err != nil || len(res) != 1 || res[0].Signed || !errors.Is(res[0].Err, ErrNotRoot) || res[0].PID != 0 {
		t.Fatalf("sign a user's listener: %+v %v", res, err)
	}
	ls, _ = Listeners(ns.FD(), 2301)
	if len(ls) != 1 || ls[0].HasKeys() {
		t.Fatalf("the user's listener got a key: %v", ls)
	}
}

// TestSignIPv4Listener: an IPv4-only listener gets the one IPv4 key, and
// Listeners then reports it signed.
func TestSignIPv4Listener(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "tsig4")
	cmd := ns.Command("/usr/bin/python3", "-c", `import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 2304))
s.listen(4)
print("listening", flush=True)
time.sleep(60)
`)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	out.Read(make([]byte, 10))
	res, err := Sign(ns.FD(), 2304, signKey)
	if err != nil || len(res) != 1 || !res[0].Changed {
		t.Fatalf("sign: %+v %v", res, err)
	}
	ls, err := Listeners(ns.FD(), 2304)
	if err != nil || len(ls) != 1 || !ls[0].SignedWith(signKey) {
		t.Fatalf("listeners: %v %v", ls, err)
	}
	if res, err := Sign(ns.FD(), 2304, signKey); err != nil || res[0].Changed {
		t.Fatalf("signed twice: %+v %v", res, err)
	}
}

// TestSignRootSocketUserProcess: a socket root created but a process of
// another user holds (root passed it on, or changed user after binding)
// is refused too: the process is that user's.
func TestSignRootSocketUserProcess(t *testing.T) {
	netnstest.RequireRoot(t, "python3")
	ns := netnstest.New(t, "tsigu")
	droppedListener(t, ns, 2302)
	res, err := Sign(ns.FD(), 2302, signKey)
	if err != nil || len(res) != 1 || res[0].Signed || !errors.Is(res[0].Err, ErrNotRoot) || res[0].Listener.UID != 0 {
		t.Fatalf("sign: %+v %v", res, err)
	}
}

// TestPeerKeyNeedsNoCapability: a process without any capability (uid
// 65534, nothing inherited) sets TCP_MD5SIG on its own socket and
// connects to a signed listener: the client needs no privilege for it.
func TestPeerKeyNeedsNoCapability(t *testing.T) {
	netnstest.RequireRoot(t, "python3", "setpriv")
	ns := netnstest.New(t, "tsigc")
	listener(t, ns, 2303)
	if _, err := Sign(ns.FD(), 2303, signKey); err != nil {
		t.Fatal(err)
	}
	// struct tcp_md5sig: sockaddr_storage (128), flags, prefixlen,
	// keylen, ifindex, key[80].
	script := fmt.Sprintf(`import socket, struct
key = %q.encode()
sa = struct.pack("<H", socket.AF_INET) + struct.pack(">H", 0) + socket.inet_aton("127.0.0.1")
sa = sa + bytes(128 - len(sa))
opt = sa + struct.pack("<BBHi", 0, 0, len(key), 0) + key + bytes(80 - len(key))
caps = [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(2)
s.setsockopt(socket.IPPROTO_TCP, 14, opt)
s.connect(("127.0.0.1", 2303))
print(caps, s.recv(3).decode().strip())
`, signKey)
	out, err := ns.Run("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "/usr/bin/python3", "-c", script)
	if err != nil || strings.TrimSpace(out) != "0000000000000000 hi" {
		t.Fatalf("unprivileged signed client: %v: %s", err, out)
	}
}

// TestAOSupport: the answer matches the kernel's config where it can be
// read, and the error is the one line the configs show.
func TestAOSupport(t *testing.T) {
	err := AOSupport()
	if err != nil && !errors.Is(err, ErrNoTCPAO) {
		t.Fatalf("AOSupport: %v", err)
	}
	if cfg, rerr := os.ReadFile("/boot/config-" + release()); rerr == nil {
		want := strings.Contains(string(cfg), "CONFIG_TCP_AO=y")
		if (err == nil) != want {
			t.Fatalf("AOSupport: %v, kernel config says CONFIG_TCP_AO=y: %v", err, want)
		}
	}
}

func release() string {
	var u unix.Utsname
	unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

// HasKeys reports whether the socket has any TCP-MD5 key.
func (l Listener) HasKeys() bool { return len(l.keys) > 0 }

// TestFindHolders: one pass finds the holders of several listeners. With
// owners it looks only in the processes whose real uid owns the socket:
// root's listener held by root and a user's held by that user are found,
// a root socket held by a process that dropped to uid 65534 is not;
// without, all three are, each in its own process.
func TestFindHolders(t *testing.T) {
	netnstest.RequireRoot(t, "python3")
	ns := netnstest.New(t, "tsfh")
	u := netnstest.NewUser(t)
	ns.MustRun("sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0")
	cmd := droppedListener(t, ns, 2313)
	pids := map[uint16]int{
		2311: listener(t, ns, 2311).Process.Pid,
		2312: listener(t, ns, 2312, "setpriv", "--reuid="+fmt.Sprint(u.UID), "--regid="+fmt.Sprint(u.GID), "--clear-groups").Process.Pid,
		2313: cmd.Process.Pid,
	}
	want := map[uint32]uint32{}
	port := map[uint32]uint16{}
	for p := range pids {
		ls, err := Listeners(ns.FD(), p)
		if err != nil || len(ls) != 1 {
			t.Fatalf("listeners of %d: %v, %v", p, ls, err)
		}
		want[ls[0].Inode], port[ls[0].Inode] = ls[0].UID, p
	}
	for _, owners := range []bool{true, false} {
		got, denied := FindHolders(want, owners)
		if denied {
			t.Errorf("owners %v: denied as root", owners)
		}
		for ino, p := range port {
			h, ok := got[ino]
			wantFound := !owners || p != 2313
			if ok != wantFound || (ok && h.PID != pids[p]) {
				t.Errorf("owners %v: port %d (socket uid %d): found %v %+v; want found %v in pid %d", owners, p, want[ino], ok, h, wantFound, pids[p])
			}
			if ok {
				if fd, err := Take(h, ino); err != nil {
					t.Errorf("take port %d from %+v: %v", p, h, err)
				} else {
					unix.Close(fd)
				}
			}
		}
	}
}

// droppedListener starts a listener on 127.0.0.1:port that root binds and
// then hands to nobody (setuid 65534), as a service that drops its
// privileges after binding does.
func droppedListener(t *testing.T, ns *netnstest.NS, port int) *exec.Cmd {
	t.Helper()
	script := fmt.Sprintf(`import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", %d))
s.listen(4)
os.setgid(65534); os.setuid(65534)
print("listening", flush=True)
import time; time.sleep(60)
`, port)
	cmd := ns.Command("/usr/bin/python3", "-c", script)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 10)
	if n, err := out.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "listening") {
		t.Fatalf("listener: %v %q", err, buf[:n])
	}
	return cmd
}
