//go:build linux

package integration

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/totp"
)

// BenchmarkKnockLimitResetOverhead: the median time from dial to an
// established connection through a server with the guess limits on and
// port 22 in reset mode, against one with the limits off and drop mode.
// Two server namespaces run side by side (`seqknockd run` in each) and
// one client dials them in turn, A B B A A B ..., so load on the machine hits
// both alike. Target: ratio at most 1.05.
func BenchmarkKnockLimitResetOverhead(b *testing.B) {
	off := newKnockBed(b, 194)
	on := newKnockBed(b, 174)
	// The two beds' clients are separate namespaces: dial from each in
	// turn (each bed's dialer reserves its own slots).
	off.start(b, "drop", "guess_limit = \"0\"\nguess_global_limit = \"0\"")
	on.start(b, "reset", "")
	const dials = 200
	var toff, ton []time.Duration
	for i := 0; i < b.N; i++ {
		// 200 dials of each: within one period's 256 slots.
		now := time.Now()
		time.Sleep(totp.NextBoundary(now, bedPeriod).Sub(now) + 200*time.Millisecond)
		for j := 0; j < dials; j++ {
			pair := []struct {
				k *knockBed
				t *[]time.Duration
			}{{off, &toff}, {on, &ton}}
			if j%2 == 1 {
				pair[0], pair[1] = pair[1], pair[0] // neither always first
			}
			for _, x := range pair {
				took, err := x.k.dial()
				if err != nil {
					b.Fatalf("dial %d: %v", j, err)
				}
				*x.t = append(*x.t, took)
			}
		}
	}
	mo, mn := medianOf(toff), medianOf(ton)
	ratio := mn.Seconds() / mo.Seconds()
	b.ReportMetric(float64(mo.Microseconds()), "us-median-off")
	b.ReportMetric(float64(mn.Microseconds()), "us-median-on")
	b.ReportMetric(ratio, "ratio")
	b.Logf("median time to an established connection over %d interleaved dials each: limits off + drop mode %v, limits on + reset mode %v; ratio %.3f (target: at most 1.05)",
		len(toff), mo.Round(time.Microsecond), mn.Round(time.Microsecond), ratio)
}

// BenchmarkKnockUnderGuessFlood: the median time to an established
// connection while another source floods random-ISN SYNs at 10,000 a
// second (default limits: the flooder is locked out), against no flood, in
// one run, alternating. Target: ratio at most 1.2.
func BenchmarkKnockUnderGuessFlood(b *testing.B) {
	k := newKnockBed(b, 196)
	k.start(b, "drop", "")
	const dials = 150
	var quiet, flooded []time.Duration
	for i := 0; i < b.N; i++ {
		for round := 0; round < 2; round++ {
			quiet = append(quiet, k.medianDial(b, dials))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan int, 1)
			go func() { done <- k.flood(ctx, b, 1<<30, 10_000, 1, uint64(round)) }()
			flooded = append(flooded, k.medianDial(b, dials))
			cancel()
			<-done
		}
	}
	l := k.live(b)
	mq, mf := medianOf(quiet), medianOf(flooded)
	ratio := mf.Seconds() / mq.Seconds()
	b.ReportMetric(float64(mq.Microseconds()), "us-median-quiet")
	b.ReportMetric(float64(mf.Microseconds()), "us-median-flood")
	b.ReportMetric(ratio, "ratio")
	b.Logf("median time to an established connection (%d dials a round): no flood %v %v, 10,000 SYN/s flood %v %v; ratio %.3f (target: at most 1.2); kernel: %d SYNs dropped by the lockout, %d reached the lookup",
		dials, mq.Round(time.Microsecond), quiet, mf.Round(time.Microsecond), flooded, ratio, l.Lockout.Packets, l.Unknocked[22].Packets)
}

func medianOf(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// softirqTicks is the machine's softirq time so far, in clock ticks (USER_HZ),
// from /proc/stat's cpu line.
func softirqTicks(tb testing.TB) uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	v, _ := strconv.ParseUint(f[7], 10, 64)
	return v
}

// BenchmarkSYNDropCost: what an unknocked SYN costs the server: a flood of
// random-ISN SYNs from one source against (a) a plain `tcp dport 22 drop`
// at priority raw, (b) the seqknock table with the limits off (every SYN
// goes through the raw chain's lookups to its drop) and (c) with the
// default limits (the flooder is locked out), and (d) the table with its
// raw chain emptied, as before it existed (every SYN through conntrack to
// the knock chain's drop). Reported per SYN: wall time of the sender (the
// veth delivers in its context) and the machine's softirq time (from
// /proc/stat, in 10 ms ticks, so a rough figure, and other load on the
// machine counts in it). Target: (b)/(a) at most 1.2. (e) is
// (b) with the pre chain's fib check taken out by hand, to show its share.
func BenchmarkSYNDropCost(b *testing.B) {
	k := newKnockBed(b, 198)
	const n = 400_000
	measure := func() (wall, soft float64) {
		s0 := softirqTicks(b)
		start := time.Now()
		got := k.flood(context.Background(), b, n, 0, 1, 5)
		wall = time.Since(start).Seconds() / float64(got) * 1e9
		soft = float64(softirqTicks(b)-s0) * 1e7 / float64(got) // ticks of 10 ms, in ns
		return wall, soft
	}
	plain := func() func() {
		cmd := k.srv.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader("table inet plain {\n chain pre {\n  type filter hook prerouting priority raw; policy accept;\n  tcp dport 22 drop\n }\n}\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		return func() { k.srv.Run("nft", "delete", "table", "inet", "plain") }
	}
	type res struct{ wall, soft []float64 }
	names := []string{"a plain drop", "b seqknock, limits off", "c seqknock, limits on", "d seqknock, no raw chain", "e b without the fib check"}
	results := map[string]*res{}
	for _, n := range names {
		results[n] = &res{}
	}
	add := func(name string, w, s float64) {
		results[name].wall = append(results[name].wall, w)
		results[name].soft = append(results[name].soft, s)
	}
	for i := 0; i < b.N; i++ {
		for round := 0; round < 2; round++ {
			undo := plain()
			w, s := measure()
			undo()
			add(names[0], w, s)
			k.start(b, "drop", "guess_limit = \"0\"\nguess_global_limit = \"0\"")
			w, s = measure()
			add(names[1], w, s)
			// The shape before the raw chain: with pre emptied, every SYN
			// goes through conntrack to the knock chain's drop. The
			// daemon would repair the chain, so it is stopped first and
			// the table installed by a one-shot sync.
			k.daemon.stop()
			if out, err := k.srv.Command(k.bin, "--config", filepath.Join(k.dir, "seqknockd.toml"), "sync").CombinedOutput(); err != nil {
				b.Fatalf("sync: %v: %s", err, out)
			}
			k.srv.MustRun("nft", "flush", "chain", "inet", "seqknock", "pre")
			w, s = measure()
			add(names[3], w, s)
			// (e) What the fib check costs: b's pre chain without it (a
			// measurement, not a shape seqknockd writes: forwarded SYNs to
			// the port would meet the drop).
			k.srv.MustRun("nft", "add", "rule", "inet", "seqknock", "pre", "tcp", "flags", "syn", "/", "fin,syn,rst,ack", "tcp", "dport", "@ports", "jump", "syn")
			w, s = measure()
			add(names[4], w, s)
			k.srv.MustRun("nft", "delete", "table", "inet", "seqknock")
			k.start(b, "drop", "")
			w, s = measure()
			k.daemon.stop()
			add(names[2], w, s)
		}
	}
	mean := func(v []float64) float64 {
		t := 0.0
		for _, x := range v {
			t += x
		}
		return t / float64(len(v))
	}
	a := results["a plain drop"]
	for _, name := range names {
		r := results[name]
		b.Logf("%-24s wall %.0f ns/SYN (ratio to a %.2f), softirq %.0f ns/SYN (ratio to a %.2f)",
			name, mean(r.wall), mean(r.wall)/mean(a.wall), mean(r.soft), mean(r.soft)/mean(a.soft))
	}
	bw := mean(results["b seqknock, limits off"].wall) / mean(a.wall)
	b.ReportMetric(bw, "ratio-wall-b/a")
	b.ReportMetric(mean(results["c seqknock, limits on"].wall)/mean(a.wall), "ratio-wall-c/a")
	b.ReportMetric(mean(results["b seqknock, limits off"].soft)/mean(a.soft), "ratio-softirq-b/a")
	b.ReportMetric(mean(results["b seqknock, limits off"].soft)/mean(results["d seqknock, no raw chain"].soft), "ratio-softirq-b/d")
	b.ReportMetric(mean(results["e b without the fib check"].soft)/mean(a.soft), "ratio-softirq-e/a")
}
