//go:build linux

package broker

import (
	"net"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkBrokerPreBind prices the source port of a broker dial: dials
// as served (the client picks the port in its namespace, pickPort, one
// more socket bound and closed; the broker binds the socket to it before
// repair mode) and dials without either (a client that does not pick, a
// broker that does not bind: the broker dial before both; test-only
// switches) take turns to a local listener, in the same run, and it
// reports both medians and their ratio (bind/nobind, ns/op of a whole
// dial: the pick, the broker's round trip, the ISN, connect()); also the
// dial whose port the broker picks (a request without a port), and the
// pick and the broker's bind alone. E.g. -bench BrokerPreBind -benchtime
// 2000x.
func BenchmarkBrokerPreBind(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
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
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	binding, plain := newBrokerBed(b, &Server{}), newBrokerBed(b, &Server{noBind: true})
	// A dial as the client's Dialer makes it through the broker: the ISN
	// set (and the port bound) in the socket's Control, then connect().
	dialer := func(path string, noPick bool) func() (net.Conn, error) {
		bc := &Client{Path: path, noPick: noPick}
		var isn uint32
		d := &net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
			isn++
			var serr error
			if err := c.Control(func(fd uintptr) { serr = bc.SetISNFrom(int(fd), isn, 0) }); err != nil {
				return err
			}
			return serr
		}}
		return func() (net.Conn, error) {
			if err := bc.Available(); err != nil {
				return nil, err
			}
			return d.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
		}
	}
	// Served; neither; the broker's bind of its own pick alone.
	modes := []func() (net.Conn, error){dialer(binding.path, false), dialer(plain.path, true), dialer(binding.path, true)}
	times := make([][]time.Duration, len(modes))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Turns alternate which goes first, so neither always follows
		// the other.
		for k := range modes {
			m := (i + k) % len(modes)
			start := time.Now()
			c, err := modes[m]()
			if err != nil {
				b.Fatalf("dial %d: %v", i, err)
			}
			times[m] = append(times[m], time.Since(start))
			c.Close()
		}
	}
	b.StopTimer()
	median := func(ds []time.Duration) time.Duration {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	bind, nobind, brokerPick := median(times[0]), median(times[1]), median(times[2])
	b.ReportMetric(float64(bind.Nanoseconds()), "bind-ns/dial")
	b.ReportMetric(float64(nobind.Nanoseconds()), "nobind-ns/dial")
	b.ReportMetric(float64(bind)/float64(nobind), "bind/nobind")
	b.ReportMetric(float64(brokerPick)/float64(nobind), "brokerpick/nobind")
	// The bind alone (with its getsockname and setsockopt calls), on
	// fresh sockets: what the broker adds to each request.
	var alone []time.Duration
	for range 1000 {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		err = bindSource(fd, 0)
		alone = append(alone, time.Since(start))
		unix.Close(fd)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(median(alone).Nanoseconds()), "bindSource-ns")
	// The client's pick alone (a throwaway socket bound and closed).
	var picks []time.Duration
	for range 1000 {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		_, err = pickPort(fd)
		picks = append(picks, time.Since(start))
		unix.Close(fd)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(median(picks).Nanoseconds()), "pickPort-ns")
	b.Logf("broker dial median: %v with the pick and the bind, %v without: %.3fx (%d dials each); the broker's own pick and bind: %v, %.3fx; bindSource alone %v, pickPort alone %v",
		bind, nobind, float64(bind)/float64(nobind), b.N, brokerPick, float64(brokerPick)/float64(nobind), median(alone), median(picks))
}
