//go:build linux

package integration

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TestReviewBudgetDrain: a spoofed flood from 4,096 addresses that are
// not the client's, as fast as the test can send (rate 0, some 400,000 a
// second here), drains the lookup budget that locked-out sources share
// (lockout_lookup_limit) and locks every one of those addresses out; the
// client's own address is never locked out, so every knock it sends is
// admitted at its first SYN. (A flood with the client's own address is
// the documented trade: each knock then gets in with a chance of about
// budget/rate.)
func TestReviewBudgetDrain(t *testing.T) {
	k := newKnockBed(t, 236)
	k.start(t, "drop", "")
	var srcs []netip.Addr
	for i := 0; i < 4096; i++ {
		srcs = append(srcs, netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}))
	}
	before := k.live(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := make(chan int, 1)
	start := time.Now()
	go func() { sent <- k.floodTo(ctx, t, 22, srcs, 50_000_000, 0, 13) }()
	time.Sleep(2500 * time.Millisecond)
	mid := k.live(t)
	const knocks = 20
	ok := 0
	for i := 0; i < knocks; i++ {
		if err := k.dialWithin(900 * time.Millisecond); err == nil {
			ok++
		}
	}
	cancel()
	n := <-sent
	rate := float64(n) / time.Since(start).Seconds()
	late := k.live(t)
	t.Logf("%d spoofed SYNs from %d addresses at %.0f a second; %d of %d knocks admitted at their first SYN; %d source(s) locked out mid-flood; %d SYNs dropped unlooked",
		n, len(srcs), rate, ok, knocks, mid.LockedOut, late.Lockout.Packets-before.Lockout.Packets)
	if rate < 2*bedLookupBudget || mid.LockedOut == 0 {
		t.Fatalf("the flood reached %.0f SYNs a second and locked out %d sources: it shows nothing", rate, mid.LockedOut)
	}
	if ok != knocks {
		t.Errorf("a flood from addresses not the client's kept %d of %d knocks out", knocks-ok, knocks)
	}
}
