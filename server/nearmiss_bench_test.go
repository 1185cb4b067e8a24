package server

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

// heapNow is the live heap after a full collection.
func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkNearMiss10kUsers measures the near-miss index at 10,000 users x
// 2 ports with the default ±20 periods and with ±10, against the daemon
// without it (near_miss_periods = 0), in the same run: the live heap of
// the config and the audit's tables (off) and of those plus the index
// (on), and the CPU of a rotation (the daemon's derivation of the new
// counter's knocks and the audit's table; on: plus the index's new
// counter). It prints the ratios on/off, the full build's time (at start
// and reload) and the cost of one diagnosis.
func BenchmarkNearMiss10kUsers(b *testing.B) {
	cfg := &Config{Period: totp.DefaultPeriod, Tolerance: 1, Slots: totp.DefaultSlots, Table: "seqknock", CtMarkBit: 23,
		Services: []Service{{Port: 22}, {Port: 2222}}}
	for i := range 10000 {
		k := make([]byte, 32)
		rand.Read(k)
		cfg.Users = append(cfg.Users, User{Name: fmt.Sprintf("u%d", i), Keys: []UserKey{{Key: k}}})
	}
	now := time.Unix(1_800_000_007, 0)
	rotate := func(at time.Time) {
		from := WindowEnd(cfg, at)
		var ks []knockEntry
		eachKnockFrom(cfg, at, from, func(k Knock) {
			ks = append(ks, knockEntry{isn: k.ISN, port: k.Port, slot: k.Slot})
		})
		sortKnocks(ks, nil)
	}
	base := heapNow()
	audit := &Auditor{}
	audit.Record(cfg, now, func(onKnock func(Knock)) (r nftgen.Result, err error) {
		eachKnockFrom(cfg, now, 0, onKnock)
		return r, nil
	})
	offHeap := heapNow() - base
	// The rotation without the index: the baseline.
	start := time.Now()
	const rotations = 5
	for i := 1; i <= rotations; i++ {
		rotate(now.Add(time.Duration(i) * cfg.Period))
	}
	offRotation := time.Since(start) / rotations
	b.Logf("off: heap of config and audit %.1f MiB; rotation %v", float64(offHeap)/(1<<20), offRotation.Round(time.Millisecond/10))
	for _, periods := range []int{20, 10} {
		cfg.NearMissPeriods = periods
		before := heapNow()
		start := time.Now()
		var ix nearIndex
		ix.advance(cfg, now)
		build := time.Since(start)
		indexHeap := heapNow() - before
		start = time.Now()
		for i := 1; i <= rotations; i++ {
			at := now.Add(time.Duration(i) * cfg.Period)
			rotate(at)
			ix.advance(cfg, at)
		}
		onRotation := time.Since(start) / rotations
		at := now.Add(rotations * cfg.Period)
		start = time.Now()
		const diagnoses = 1000
		for i := range diagnoses {
			ix.diagnose(22, uint32(i*2654435761), netip.Addr{}, at, false)
		}
		perDiagnosis := time.Since(start) / diagnoses
		b.Logf("±%d periods: %d knocks indexed, %.1f MiB (%.1f bytes each); heap on/off %.2f; rotation %v, on/off %.2f; full build %v; one diagnosis %v",
			periods, ix.entries(), float64(indexHeap)/(1<<20), float64(indexHeap)/float64(ix.entries()),
			float64(offHeap+indexHeap)/float64(offHeap), onRotation.Round(time.Millisecond/10),
			onRotation.Seconds()/offRotation.Seconds(), build.Round(time.Millisecond), perDiagnosis)
		runtime.KeepAlive(&ix)
	}
	runtime.KeepAlive(audit)
	for i := 0; i < b.N; i++ {
	}
}
