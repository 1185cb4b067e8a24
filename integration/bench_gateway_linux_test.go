//go:build linux

package integration

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/totp/keyfile"
)

// gwBenchBytes is what each transfer sends.
const gwBenchBytes = 256 << 20

// BenchmarkGatewayThroughput: bulk throughput from a LAN client through
// seqknock gateway, against a direct knocked connection from the same
// client on the same path (the router forwards and masquerades it), in
// alternating rounds of the same run; it prints the medians and their
// ratio. Goal: at least 0.9x.
func BenchmarkGatewayThroughput(b *testing.B) {
	w := newGWWorld(b, 222, 9000, 9001)
	// 9000 is reached directly, so it must not be a gateway destination.
	w.gwConfig = w.path("gateway-bench.toml")
	gw := fmt.Sprintf("[[destination]]\naddress = %q\nport = 9001\nhost = \"srv\"\nallow = [%q]\n", w.up.A4, w.down.B4)
	if err := os.WriteFile(w.gwConfig, []byte(gw), 0o600); err != nil {
		b.Fatal(err)
	}
	w.startSink(9000)
	w.startSink(9001)
	w.startGateway()
	key, err := keyfile.Load(w.path("alice.key"))
	if err != nil {
		b.Fatal(err)
	}
	d := &client.Dialer{Key: key, Realm: "lab", Period: w.period, SynTimeout: time.Second, Network: "tcp4"}
	direct := func() (net.Conn, error) {
		var c net.Conn
		err := w.lan.Do(func() (err error) {
			c, err = d.Dial(context.Background(), w.up.A4, 9000)
			return err
		})
		return c, err
	}
	via := func() (net.Conn, error) {
		var c net.Conn
		err := w.lan.Do(func() (err error) {
			c, err = net.DialTimeout("tcp4", net.JoinHostPort(w.up.A4, "9001"), 10*time.Second)
			return err
		})
		return c, err
	}
	rounds := max(b.N, 5)
	cpu0 := procCPU(b, w.gw.Process.Pid)
	var ds, gs []float64
	buf := make([]byte, 1<<20)
	b.ResetTimer()
	for i := 0; i < rounds; i++ {
		for _, m := range []struct {
			dial func() (net.Conn, error)
			out  *[]float64
		}{{direct, &ds}, {via, &gs}} {
			mbps, err := transfer(m.dial, buf)
			if err != nil {
				b.Fatalf("round %d: %v\ngateway:\n%s", i, err, w.gwLog)
			}
			*m.out = append(*m.out, mbps)
		}
	}
	b.StopTimer()
	// The gateway idles through the direct rounds: its CPU time is the
	// gateway rounds' alone.
	cpuPerGB := (procCPU(b, w.gw.Process.Pid) - cpu0).Seconds() / (float64(rounds) * gwBenchBytes / 1e9)
	dm, gm := median(ds), median(gs)
	b.ReportMetric(gm, "MB/s-gateway")
	b.ReportMetric(dm, "MB/s-direct")
	b.ReportMetric(cpuPerGB, "gateway-cpu-s/GB")
	b.Logf("bulk throughput, %d MiB a transfer: direct knocked %.0f MB/s, through the gateway %.0f MB/s, ratio %.2f (medians of %d alternating rounds; goal: at least 0.9); the gateway's CPU: %.2f s/GB",
		gwBenchBytes>>20, dm, gm, gm/dm, rounds, cpuPerGB)
}

// transfer sends gwBenchBytes over a connection from dial and waits for
// the sink's count: MB/s from the first byte to the count.
func transfer(dial func() (net.Conn, error), buf []byte) (float64, error) {
	c, err := dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	for sent := 0; sent < gwBenchBytes; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			return 0, err
		}
	}
	c.(*net.TCPConn).CloseWrite()
	var n [8]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return 0, fmt.Errorf("sink's count: %w", err)
	}
	if got := binary.BigEndian.Uint64(n[:]); got != gwBenchBytes {
		return 0, fmt.Errorf("sink counted %d bytes, sent %d", got, gwBenchBytes)
	}
	return float64(gwBenchBytes) / 1e6 / time.Since(start).Seconds(), nil
}

// startSink serves port on the server: it reads to EOF and answers with
// the count.
func (w *gwWorld) startSink(port int) {
	var ln net.Listener
	if err := w.srv.Do(func() (err error) { ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port)); return err }); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				c.Write(binary.BigEndian.AppendUint64(nil, uint64(n)))
			}()
		}
	}()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// procCPU is the user and system CPU time process pid has used.
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command, which ends with the last ')': state is
	// field 3, utime and stime fields 14 and 15.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}
