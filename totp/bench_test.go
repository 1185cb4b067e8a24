package totp

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkWindow10kUsers derives the whole window the server needs for
// 10,000 users x 2 ports x 3 counters x 4 slots (240,000 ISNs) and reports
// ISNs per second. The baseline, measured in the same run, is the one-shot
// ISN function (a fresh HMAC per value); the ratio shows what reusing one
// keyed HMAC state per user saves. "setkey" is one Deriver for all users,
// re-keyed per user (what the server does), against a fresh Deriver per
// user ("deriver").
func BenchmarkWindow10kUsers(b *testing.B) {
	const users = 10000
	keys := make([][]byte, users)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("user-%011d-key-material", i))[:32]
	}
	ports := []uint16{22, 2222}
	w := Window(time.Unix(1740000000, 0), DefaultPeriod, 1, 0)
	run := func(b *testing.B, derive func(key []byte) func(uint16, uint64, uint8) uint32) float64 {
		var sink uint32
		start := time.Now()
		for i := 0; i < b.N; i++ {
			for _, k := range keys {
				isn := derive(k)
				for _, p := range ports {
					for _, e := range w {
						for s := uint8(0); s < DefaultSlots; s++ {
							sink ^= isn(p, e.Counter, s)
						}
					}
				}
			}
		}
		_ = sink
		n := float64(b.N * users * len(ports) * len(w) * DefaultSlots)
		rate := n / time.Since(start).Seconds()
		b.ReportMetric(rate, "isn/s")
		b.ReportMetric(float64(users*len(ports)*len(w)*DefaultSlots), "isn/op")
		return rate
	}
	var reuse, rekey, oneshot float64
	b.Run("setkey", func(b *testing.B) {
		d, _ := NewDeriver(keys[0], "")
		rekey = run(b, func(k []byte) func(uint16, uint64, uint8) uint32 {
			d.SetKey(k)
			return d.ISN
		})
	})
	b.Run("deriver", func(b *testing.B) {
		reuse = run(b, func(k []byte) func(uint16, uint64, uint8) uint32 {
			d, _ := NewDeriver(k, "")
			return d.ISN
		})
	})
	b.Run("oneshot-baseline", func(b *testing.B) {
		oneshot = run(b, func(k []byte) func(uint16, uint64, uint8) uint32 {
			return func(p uint16, c uint64, s uint8) uint32 {
				v, _ := ISN(k, "", p, c, s)
				return v
			}
		})
	})
	if oneshot > 0 {
		b.Logf("deriver %.0f isn/s, one-shot %.0f isn/s, ratio %.2fx; 240,000 ISNs take %.3fs",
			reuse, oneshot, reuse/oneshot, 240000/reuse)
		b.Logf("one re-keyed deriver %.0f isn/s, ratio %.2fx to a fresh deriver per user; 240,000 ISNs take %.3fs",
			rekey, rekey/reuse, 240000/rekey)
	}
}
