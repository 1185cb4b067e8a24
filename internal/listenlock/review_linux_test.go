//go:build linux

package listenlock

import (
	"strings"
	"testing"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestReviewDualStackListener: a dual-stack listener on [::] (IPv4
// arrives v4-mapped) is locked for IPv4 SYNs as well: a plain IPv4
// connect times out, a marked one gets the greeting.
func TestReviewDualStackListener(t *testing.T) {
	netnstest.RequireRoot(t, "nft")
	ns := netnstest.New(t, "lld")
	ln := listen(t, ns, "[::]:2226") // Go listens dual-stack on [::]
	fd := sockFD(t, ln)
	if changed, err := Attach(fd, testBit); !changed || err != nil {
		t.Fatalf("Attach = %v, %v", changed, err)
	}
	nft := ns.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader(markRule)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	if r := dial(t, ns, "127.0.0.1:2226", 0); r.err == nil {
		r.conn.Close()
		t.Errorf("a plain IPv4 connect to a locked dual-stack listener got in")
	} else if !isTimeout(r.err) {
		t.Errorf("plain IPv4 connect: %v; want a timeout", r.err)
	}
	r := dial(t, ns, "127.0.0.1:2226", knockPort)
	if r.err != nil {
		t.Fatalf("marked IPv4 connect: %v", r.err)
	}
	r.conn.Close()
	if r.greeting != "hello\n" {
		t.Errorf("marked IPv4 connect read %q", r.greeting)
	}
}
