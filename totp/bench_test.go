package totp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
	"time"
)

// BenchmarkWindow10kUsers derives the whole window the server needs for
// 10,000 users x 2 ports x 3 counters x 4 slots (240,000 ISNs) and reports
// ISNs per second: one Deriver re-keyed per user (SetKey, what the server
// does) against a baseline measured in the same run, crypto/hmac written
// out by hand (hmac.New per key, Reset per value). A ratio near 1 means the
// Deriver adds nothing to the HMAC it wraps.
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
	var deriver, baseline float64
	b.Run("deriver", func(b *testing.B) {
		d, _ := NewDeriver(keys[0], "")
		deriver = run(b, func(k []byte) func(uint16, uint64, uint8) uint32 {
			d.SetKey(k)
			return d.ISN
		})
	})
	b.Run("hmac-baseline", func(b *testing.B) {
		msg := make([]byte, 0, len(Domain)+1+2+8+1)
		sum := make([]byte, 0, sha256.Size)
		baseline = run(b, func(k []byte) func(uint16, uint64, uint8) uint32 {
			mac := hmac.New(sha256.New, k)
			return func(p uint16, c uint64, s uint8) uint32 {
				m := append(msg[:0], Domain...)
				m = append(m, 0) // the empty realm
				m = binary.BigEndian.AppendUint16(m, p)
				m = binary.BigEndian.AppendUint64(m, c)
				m = append(m, s)
				mac.Reset()
				mac.Write(m)
				sum = mac.Sum(sum[:0])
				return isnFromMAC(sum)
			}
		})
	})
	if baseline > 0 {
		b.Logf("deriver %.0f isn/s, crypto/hmac %.0f isn/s, ratio %.2fx; 240,000 ISNs take %.3fs",
			deriver, baseline, deriver/baseline, 240000/deriver)
	}
}
