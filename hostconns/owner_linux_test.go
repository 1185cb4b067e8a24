//go:build linux

package hostconns

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
)

// TestOwner: the uid of a loopback connection's other end is found by
// its exact address pair, IPv4 and IPv6; a pair no connected socket has
// (a listener's included) is ErrNoSocket.
func TestOwner(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("%s: %v", addr, err)
		}
		defer l.Close()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// As the server sees it: its peer is the client's socket.
		local := netip.MustParseAddrPort(s.RemoteAddr().String())
		remote := netip.MustParseAddrPort(s.LocalAddr().String())
		uid, err := Owner(0, local, remote)
		if err != nil || int(uid) != os.Getuid() {
			t.Errorf("%s: owner %d, %v; want %d", addr, uid, err, os.Getuid())
		}
		// Another port, or another address with the same ports: no such
		// socket.
		other := netip.MustParseAddr("127.0.0.2")
		if local.Addr().Is6() {
			other = netip.MustParseAddr("::2")
		}
		for _, pair := range [][2]netip.AddrPort{
			{netip.AddrPortFrom(local.Addr(), local.Port()^1), remote},
			{local, netip.AddrPortFrom(other, remote.Port())},
			{netip.AddrPortFrom(other, local.Port()), remote},
			// The listener's address: the kernel's lookup finds the
			// listening socket, which is no connection.
			{remote, netip.AddrPortFrom(other, 40000)},
		} {
			if _, err := Owner(0, pair[0], pair[1]); !errors.Is(err, ErrNoSocket) {
				t.Errorf("%s: pair %v: %v, want ErrNoSocket", addr, pair, err)
			}
		}
	}
}
