//go:build linux

package server

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// BenchmarkKnockTTFBLock measures the time to first byte of a knocked
// connection (connect with the knock, then the service's greeting) to a
// locked listener (port 22, the socket filter on) and to an unlocked one
// (port 2222, the same service and table, no filter), alternating, and
// reports the medians and their ratio. Each iteration spends one knock per
// port, so keep -benchtime at most 200x: go test ./server -run '^$'
// -bench KnockTTFBLock -benchtime 100x
func BenchmarkKnockTTFBLock(b *testing.B) {
	netnstest.RequireRoot(b, "python3")
	srv, cli := netnstest.New(b, "bsrv"), netnstest.New(b, "bcli")
	link := netnstest.Connect(b, srv, cli, 180)
	k := NewKernel(srv.FD())
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "alice.key"), []byte(base64.StdEncoding.EncodeToString(aliceKey)+"\n"), 0o600)
	path := filepath.Join(dir, "seqknockd.toml")
	os.WriteFile(path, []byte(failClosedConfig+"[[service]]\nport = 2222\n"), 0o600)
	cfg, err := LoadConfig(path)
	if err != nil {
		b.Fatal(err)
	}
	startService(b, srv, 22)
	startService(b, srv, 2222)
	if _, err := Sync(k, cfg, time.Now()); err != nil {
		b.Fatal(err)
	}
	ls, err := k.Listeners.List(22, nil)
	if err != nil || len(ls) != 2 {
		b.Fatalf("listeners of 22: %v, %v", ls, err)
	}
	for i, r := range k.Listeners.Lock(ls, cfg.PacketMark(), true) {
		if l := ls[i]; !r.Locked {
			b.Fatalf("lock %s: %v", l.Local, r.Err)
		}
	}
	if b.N > 200 {
		b.Fatalf("-benchtime %dx: at most 200x (one knock per port and iteration, 128 slots a period)", b.N)
	}
	ttfb := func(port uint16, slot int) time.Duration {
		start := time.Now()
		s, err := knockSession(cli, link.A4, port, slot)
		if err != nil {
			b.Fatalf("knock to %d: %v", port, err)
		}
		took := time.Since(start)
		s.Close()
		return took
	}
	var on, off []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			on = append(on, ttfb(22, i%128))
			off = append(off, ttfb(2222, i%128))
		} else {
			off = append(off, ttfb(2222, i%128))
			on = append(on, ttfb(22, i%128))
		}
	}
	b.StopTimer()
	slices.Sort(on)
	slices.Sort(off)
	mOn, mOff := on[len(on)/2], off[len(off)/2]
	b.ReportMetric(float64(mOn.Microseconds()), "µs-ttfb-locked")
	b.ReportMetric(float64(mOff.Microseconds()), "µs-ttfb-unlocked")
	b.ReportMetric(float64(mOn)/float64(mOff), "locked/unlocked")
	b.Logf("median time to first byte of a knocked connection: locked %v, unlocked %v, ratio %.3f (%d each)", mOn, mOff, float64(mOn)/float64(mOff), len(on))
}
