//go:build linux

package server

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/seqknock/seqknock/totp"
)

// TestClockBackNeverReadmits steps the daemon's clock (its Now seam) back
// by 3 s at a 2 s period, as in the reproduction: a knock spent
// before the step, whose used entry has since expired, is not admitted
// again when the daemon syncs while the stepped clock is back in the
// knock's period; a knock of the current period still is.
func TestClockBackNeverReadmits(t *testing.T) {
	f := newInForce(t, 76, `period = "2s"
tolerance = 0
slots = 1
realm = "lab"
[[service]]
port = 22
[[user]]
name = "alice"
key_file = "alice.key"
`)
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	f.stop()
	// Start just after a boundary, so the knock's period has most of its
	// 2 s ahead.
	time.Sleep(time.Until(totp.NextBoundary(time.Now(), 2*time.Second).Add(100 * time.Millisecond)))
	f.start(t, daemonOpts{now: now})
	watchSynAcks(f.testbed)
	s := newSynSender(t, f.testbed)
	d, _ := totp.NewDeriver(aliceKey, "lab")
	spentAt := time.Now()
	c := totp.Counter(spentAt, 2*time.Second)
	k := d.ISN(22, c, 0)
	if !freshKnock(t, f.testbed, s, k) {
		t.Fatal("the knock was not admitted the first time")
	}
	offset.Store(int64(-3 * time.Second))
	// Wait until the used entry (2 s) is gone and the stepped clock is in
	// the knock's period again, then make the daemon sync (a foreign change
	// makes it repair).
	for time.Since(spentAt) < 2200*time.Millisecond || totp.Counter(now(), 2*time.Second) != c {
		time.Sleep(10 * time.Millisecond)
		if time.Since(spentAt) > 6*time.Second {
			t.Fatal("missed the stepped clock's pass through the knock's period")
		}
	}
	f.srv.MustRun("nft", "flush", "set", "inet", "seqknock", "valid")
	waitFor(t, "repair", func() bool {
		out, _ := f.srv.Run("nft", "list", "set", "inet", "seqknock", "valid")
		return len(out) > 0 && containsElements(out)
	})
	if freshKnock(t, f.testbed, s, k) {
		t.Fatalf("a spent knock was admitted again after the clock went back\n%s", f.log.String())
	}
	// Away from a boundary, where the daemon's rotation could race the SYN.
	if into := time.Since(totp.Start(totp.Counter(time.Now(), 2*time.Second), 2*time.Second)); into < 300*time.Millisecond || into > 1500*time.Millisecond {
		time.Sleep(time.Until(totp.NextBoundary(time.Now(), 2*time.Second).Add(300 * time.Millisecond)))
	}
	cur := d.ISN(22, totp.Counter(time.Now(), 2*time.Second), 0)
	if !freshKnock(t, f.testbed, s, cur) {
		t.Errorf("a knock of the current period was not admitted\n%s", f.log.String())
	}
}

func containsElements(listing string) bool {
	for i := 0; i+10 <= len(listing); i++ {
		if listing[i:i+10] == "elements =" {
			return true
		}
	}
	return false
}
