//go:build linux

package integration

import (
	"context"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
)

// BenchmarkKnockAuditOverhead: the median time from dial to an established
// connection through `seqknockd run` with the audit log and both metrics
// exporters on, against the same daemon with them off, in one run on one
// pair of namespaces. The knock is checked in the kernel either way; the
// audit reads the kernel's nflog messages after the fact. Target: ratio at
// most 1.05.
func BenchmarkKnockAuditOverhead(b *testing.B) {
	netnstest.RequireRoot(b)
	bin := netnstest.Build(b, "server/cmd/seqknockd")
	srv, cli := netnstest.New(b, "baud"), netnstest.New(b, "bauc")
	link := netnstest.Connect(b, srv, cli, 144)
	var ln net.Listener
	if err := srv.Do(func() (err error) { ln, err = net.Listen("tcp", ":22"); return }); err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dir := b.TempDir()
	key := []byte("bench-audit-key-0123456789abcdefg")
	os.WriteFile(filepath.Join(dir, "k.key"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	cfg := filepath.Join(dir, "seqknockd.toml")
	const period = 10 * time.Second
	os.WriteFile(cfg, []byte("period = \"10s\"\nslots = 256\n[[service]]\nport = 22\n[[user]]\nname = \"u\"\nkey_file = \"k.key\"\n"), 0o600)

	d := benchDialer(key, period, link.A4)
	const dials = 150
	median := func(audit bool, args ...string) time.Duration {
		cmd := srv.Command(bin, append([]string{"--config", cfg, "run", "--teardown-on-exit"}, args...)...)
		// The log goes to a file, as to journald: no goroutine of this
		// process copies it while the dials are timed.
		logFile, err := os.CreateTemp(dir, "log")
		if err != nil {
			b.Fatal(err)
		}
		defer logFile.Close()
		cmd.Stderr = logFile
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		logText := func() string { t, _ := os.ReadFile(logFile.Name()); return string(t) }
		for !strings.Contains(logText(), "msg=sync") {
			time.Sleep(20 * time.Millisecond)
		}
		// A fresh period for each run: 150 of its 256 slots.
		now := time.Now()
		time.Sleep(totp.NextBoundary(now, period).Sub(now) + 200*time.Millisecond)
		times := make([]time.Duration, 0, dials)
		for i := 0; i < dials; i++ {
			var conn *net.TCPConn
			start := time.Now()
			err := cli.Do(func() (err error) { conn, err = d.Dial(context.Background(), link.A4, 22); return })
			if err != nil {
				b.Fatalf("dial %d: %v\n%s", i, err, logText())
			}
			times = append(times, time.Since(start))
			conn.Close()
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		if n := strings.Count(logText(), "knock admitted"); audit && n != dials {
			// Let the audit catch up: it reads the kernel's messages.
			time.Sleep(time.Second)
			if n = strings.Count(logText(), "knock admitted"); n != dials {
				b.Errorf("%d audit lines for %d connections", n, dials)
			}
		}
		return times[len(times)/2]
	}
	var off, on time.Duration
	for i := 0; i < b.N; i++ {
		off = median(false, "--audit=false")
		on = median(true, "--metrics-textfile", filepath.Join(dir, "m.prom"), "--metrics-listen", "127.0.0.1:9810")
	}
	ratio := on.Seconds() / off.Seconds()
	b.ReportMetric(float64(off.Microseconds()), "us-median-off")
	b.ReportMetric(float64(on.Microseconds()), "us-median-on")
	b.ReportMetric(ratio, "ratio")
	b.Logf("median time to an established connection over %d dials: audit and metrics off %v, on %v, ratio %.3f (target: at most 1.05)",
		dials, off.Round(time.Microsecond), on.Round(time.Microsecond), ratio)
}
