//go:build linux

package hostconns

import (
	"net"
	"net/netip"
	"testing"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestEstablished lists the connections to a port in a fresh namespace:
// IPv4, IPv6 and IPv4 through a dual-stack socket (reported unmapped); a
// listener and connections to other ports are not listed.
func TestEstablished(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "hconn")
	keep := make(chan net.Conn, 16) // the accepted ends stay open
	err := ns.Do(func() error {
		for _, l := range []struct{ network, addr string }{{"tcp", "[::]:2200"}, {"tcp4", "127.0.0.1:2201"}} {
			ln, err := net.Listen(l.network, l.addr)
			if err != nil {
				return err
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					keep <- c
				}
			}()
		}
		for _, a := range []string{"127.0.0.1:2200", "[::1]:2200", "127.0.0.1:2201"} {
			c, err := net.Dial("tcp", a)
			if err != nil {
				return err
			}
			t.Cleanup(func() { c.Close() })
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Established(ns.FD(), []uint16{2200})
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]bool{netip.MustParseAddr("127.0.0.1"): true, netip.MustParseAddr("::1"): true}
	if len(got) != 2 {
		t.Fatalf("got %v, want the two connections to port 2200", got)
	}
	for _, c := range got {
		if c.Local.Port() != 2200 || !want[c.Local.Addr()] || c.Remote.Addr() != c.Local.Addr() || c.Remote.Port() < 1024 {
			t.Errorf("connection %+v", c)
		}
	}
}
