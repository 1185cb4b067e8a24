//go:build linux

package nftgen

import (
	"context"
	"github.com/seqknock/seqknock/internal/nlwatch"
	"golang.org/x/sys/unix"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// knockStream yields n pseudo-random knocks on ports 22 and 2222 expiring
// 30, 60 or 90 s after now, the same for the same seed.
func knockStream(n int, seed uint64, now time.Time) func(func(Element) bool) {
	return func(yield func(Element) bool) {
		r := rand.New(rand.NewPCG(seed, 1))
		for i := 0; i < n; i++ {
			port := uint16(22)
			if i%2 == 1 {
				port = 2222
			}
			if !yield(Element{Port: port, ISN: r.Uint32(), Expires: now.Add(time.Duration(1+i%3) * 30 * time.Second)}) {
				return
			}
		}
	}
}

// BenchmarkApplySplit splits a cold sync of 240,000 knocks and a rotation
// of 80,000 into Go's part (reading the table, building the batch) and the
// kernel's (the netlink round trip of the transaction), each timed apart,
// with no one listening to nftables notifications, with the Conn's own
// Watch running (the daemon's case: send leaves the group meanwhile), and
// with a listener in another namespace (any listener on the host makes the
// kernel announce every element of every namespace's transactions). It
// prints the kernel times of the last two against the first.
func BenchmarkApplySplit(b *testing.B) {
	netnstest.RequireRoot(b)
	kernel := map[string][2]time.Duration{}
	for _, who := range []string{"none", "own-watch", "foreign-listener"} {
		b.Run("listener="+who, func(b *testing.B) {
			var sum [4]time.Duration
			for i := 0; i < b.N; i++ {
				t := splitOnce(b, who, uint64(i))
				for j := range sum {
					sum[j] += t[j]
				}
			}
			for j := range sum {
				sum[j] /= time.Duration(b.N)
			}
			b.ReportMetric(float64(sum[1].Microseconds())/1000, "ms-cold-kernel")
			b.ReportMetric(float64(sum[3].Microseconds())/1000, "ms-rotation-kernel")
			b.Logf("cold sync 240,000: build %v, kernel %v; rotation 80,000: build %v, kernel %v",
				sum[0].Round(time.Millisecond), sum[1].Round(time.Millisecond), sum[2].Round(time.Millisecond), sum[3].Round(time.Millisecond))
			kernel[who] = [2]time.Duration{sum[1], sum[3]}
		})
	}
	if n := kernel["none"]; n[0] > 0 {
		for _, who := range []string{"own-watch", "foreign-listener"} {
			k := kernel[who]
			b.Logf("kernel time with %s / with none: cold sync %.2f, rotation %.2f", who, k[0].Seconds()/n[0].Seconds(), k[1].Seconds()/n[1].Seconds())
		}
	}
}

// splitOnce times one cold sync and one rotation in a fresh namespace:
// build and kernel time of each.
func splitOnce(b *testing.B, listener string, seed uint64) [4]time.Duration {
	now := time.Unix(1_000_000, 0)
	ns := netnstest.New(b, "bsplit")
	c := &Conn{NetNS: ns.FD()}
	switch listener {
	case "foreign-listener":
		other := netnstest.New(b, "blisten")
		conn, err := nlwatch.Join(other.FD(), unix.NFNLGRP_NFTABLES)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
	case "own-watch":
		ctx, cancel := context.WithCancel(context.Background())
		if _, err := c.Watch(ctx, "seqknock"); err != nil {
			b.Fatal(err)
		}
		defer func() {
			// Gone before the next namespace's syncs: a watch left
			// running would be a listener to them.
			cancel()
			for len(c.watch.list()) > 0 {
				time.Sleep(time.Millisecond)
			}
		}()
		for len(c.watch.list()) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	s := testState()
	s.Valid = nil
	s.Knocks = knockStream(240000, seed, now)
	s.KnockCount = 240000
	t0 := time.Now()
	live, err := c.read(s.Table, false)
	if err != nil {
		b.Fatal(err)
	}
	bt, err := buildBatch(s, now, live, nil, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	t1 := time.Now()
	if err := c.send(bt); err != nil {
		b.Fatal(err)
	}
	t2 := time.Now()
	rs := s
	rs.Knocks = knockStream(80000, seed+1000, now.Add(30*time.Second))
	if _, err := c.read(s.Table, false); err != nil {
		b.Fatal(err)
	}
	rb, err := buildAddBatch(rs, now)
	if err != nil {
		b.Fatal(err)
	}
	t3 := time.Now()
	if err := c.send(rb); err != nil {
		b.Fatal(err)
	}
	t4 := time.Now()
	return [4]time.Duration{t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3)}
}
