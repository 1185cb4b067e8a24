//go:build linux

package admitlog

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestListen logs SYNs to a port with `log group 7` in a fresh namespace
// and reads them back: addresses, ports and sequence numbers, IPv4 and
// IPv6; Drain returns nothing more once drained.
func TestListen(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "alog")
	ns.MustRun("nft", "add table inet t; add chain inet t c { type filter hook input priority 0; }; add rule inet t c tcp dport 5555 tcp flags syn log group 7")
	l, err := Listen(ns.FD(), 7)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := Listen(ns.FD(), 7); err == nil {
		t.Error("a second listener bound the same group")
	}
	for _, addr := range []string{"127.0.0.1", "::1"} {
		ns.Do(func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "5555"), time.Second)
			if err == nil {
				c.Close()
			}
			return nil
		})
	}
	var got []Admission
	deadline := time.After(3 * time.Second)
	for len(got) < 2 {
		select {
		case <-l.Ready():
			a, err := l.Drain()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, a...)
		case <-deadline:
			t.Fatalf("got %v, want 2 admissions", got)
		}
	}
	if len(got) != 2 {
		t.Fatalf("got %v", got)
	}
	for i, want := range []string{"127.0.0.1", "::1"} {
		a := got[i]
		if a.Dst != netip.AddrPortFrom(netip.MustParseAddr(want), 5555) || a.Src.Addr() != a.Dst.Addr() || a.Src.Port() < 1024 || a.Seq == 0 {
			t.Errorf("admission %d: %+v", i, a)
		}
	}
	if a, err := l.Drain(); err != nil || len(a) != 0 {
		t.Errorf("second drain: %v %v", a, err)
	}
}
