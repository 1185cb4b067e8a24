//go:build linux

package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/netnstest"
)

// socksBench is a server namespace with a knock-protected bulk service on
// port 9000 and a client namespace running `seqknock socks` (as root) on
// 127.0.0.1:1080. The service writes "hi\n" at once, then, after a line
// "bulk", bulkBytes bytes, and closes.
type socksBench struct {
	*world
	cfg    string
	direct *client.Dialer
}

const bulkBytes = 256 << 20

func newSocksBench(b *testing.B, subnet int) *socksBench {
	w := &socksBench{world: newWorld(b, subnet, 30*time.Second)}
	os.WriteFile(w.path("seqknockd.toml"), []byte("period = \"30s\"\ntolerance = 1\nslots = 256\nrealm = \"lab\"\n[[service]]\nport = 22\n[[service]]\nport = 9000\n[[user]]\nname = \"alice\"\nkey_file = \"alice.key\"\n"), 0o600)
	var l net.Listener
	if err := w.srv.Do(func() (err error) { l, err = net.Listen("tcp4", w.cl.A4+":9000"); return err }); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	chunk := make([]byte, 1<<20)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "hi\n")
				line, _ := bufio.NewReader(c).ReadString('\n')
				if line != "bulk\n" {
					return
				}
				for n := 0; n < bulkBytes; n += len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	w.startDaemon()
	w.cfg = w.path("client.toml")
	os.WriteFile(w.cfg, []byte(fmt.Sprintf("[[host]]\nmatch = %q\nport = 9000\nkey_file = %q\nrealm = \"lab\"\nperiod = \"30s\"\nslots = 256\n", w.cl.A4, w.path("alice.key"))), 0o600)
	socks := w.cli.Command(w.seqknock, "socks", "--config", w.cfg, "--socket", "none", "--syn-timeout", "1s")
	socks.Env = append(os.Environ(), "XDG_STATE_HOME="+w.path("state"))
	log := &netnstest.Buffer{}
	socks.Stderr = log
	if err := socks.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { socks.Process.Kill(); socks.Wait() })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), "serving"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("seqknock socks did not start: %s", log)
		}
	}
	// The same slot file as the proxy's: no knock is used twice.
	store := &client.SlotStore{Base: w.path("state"), Sub: []string{"seqknock"}}
	w.direct = &client.Dialer{Key: aliceKey, Realm: "lab", Period: 30 * time.Second, Slots: 256, SynTimeout: time.Second, Reserve: store.Reserve}
	return w
}

// viaSocks connects through the proxy to the service, sending after the
// SOCKS5 request, in the same write, then; it returns the connection
// once the proxy's reply and the service's "hi" have been read.
func (w *socksBench) viaSocks(b *testing.B, then string) (net.Conn, *bufio.Reader) {
	var c net.Conn
	if err := w.cli.Do(func() (err error) { c, err = net.Dial("tcp", "127.0.0.1:1080"); return err }); err != nil {
		b.Fatal(err)
	}
	ip := net.ParseIP(w.cl.A4).To4()
	req := append([]byte{5, 1, 0, 5, 1, 0, 1}, ip...)
	req = append(req, 9000>>8, 9000&0xff)
	c.Write(append(req, then...))
	r := bufio.NewReaderSize(c, 256<<10)
	hdr := make([]byte, 12)
	if _, err := io.ReadFull(r, hdr); err != nil || hdr[3] != 0 {
		b.Fatalf("socks5: % x %v", hdr, err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "hi\n" {
		b.Fatalf("banner through socks: %q %v", line, err)
	}
	return c, r
}

// direct dials the service with a knock from this process.
func (w *socksBench) directConn(b *testing.B, then string) (net.Conn, *bufio.Reader) {
	var c net.Conn
	if err := w.cli.Do(func() (err error) {
		c, err = w.direct.Dial(b.Context(), w.cl.A4, 9000)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	io.WriteString(c, then)
	r := bufio.NewReaderSize(c, 256<<10)
	if line, err := r.ReadString('\n'); err != nil || line != "hi\n" {
		b.Fatalf("banner: %q %v", line, err)
	}
	return c, r
}

// drain reads r to its end and returns the bytes per second from now.
func drain(b *testing.B, r io.Reader) float64 {
	start := time.Now()
	buf := make([]byte, 256<<10)
	n := 0
	for {
		m, err := r.Read(buf)
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if n != bulkBytes {
		b.Fatalf("%d bytes, want %d", n, bulkBytes)
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkSocksThroughput: bulk bytes from a knocked service through
// `seqknock socks` (spliced) against a knocked connection read directly,
// alternating over rounds in the same run; medians; then the same over a
// link shaped to 1 Gbit/s. Goal: ratio at least 0.9. Over the bare veth
// the CPU sets the pace, and the proxy's extra loopback hop (its splices,
// a second TCP stack traversal and wake-ups) competes with the sender
// and the reader for the same cores.
func BenchmarkSocksThroughput(b *testing.B) {
	w := newSocksBench(b, 222)
	const rounds = 7
	var viaRates, directRates []float64
	for i := 0; i < rounds; i++ {
		c, r := w.directConn(b, "bulk\n")
		directRates = append(directRates, drain(b, r))
		c.Close()
		c, r = w.viaSocks(b, "bulk\n")
		viaRates = append(viaRates, drain(b, r))
		c.Close()
	}
	d, v := medianFloat(directRates), medianFloat(viaRates)
	// The same over a link of 1 Gbit/s (a token bucket on the server's
	// side of the veth), where the link, not the CPU, sets the pace.
	w.srv.MustRun("tc", "qdisc", "add", "dev", w.cl.AIf, "root", "tbf", "rate", "1gbit", "burst", "1mb", "latency", "20ms")
	var viaShaped, directShaped []float64
	for i := 0; i < 3; i++ {
		c, r := w.directConn(b, "bulk\n")
		directShaped = append(directShaped, drain(b, r))
		c.Close()
		c, r = w.viaSocks(b, "bulk\n")
		viaShaped = append(viaShaped, drain(b, r))
		c.Close()
	}
	ds, vs := medianFloat(directShaped), medianFloat(viaShaped)
	b.ReportMetric(v/1e6, "MB/s-socks")
	b.ReportMetric(d/1e6, "MB/s-direct")
	b.ReportMetric(v/d, "ratio")
	b.ReportMetric(vs/ds, "ratio-1gbit")
	b.Logf("bulk %d MiB from a knocked service, medians of %d alternating rounds: through seqknock socks %.0f MB/s, direct %.0f MB/s, ratio %.3f; "+
		"over a 1 Gbit/s link (3 rounds): %.0f MB/s and %.0f MB/s, ratio %.3f (goal: at least 0.9)",
		bulkBytes>>20, rounds, v/1e6, d/1e6, v/d, vs/1e6, ds/1e6, vs/ds)
}

// BenchmarkSocksFirstByte: the time from connecting to the first byte of
// a knocked service (its banner) through the running `seqknock socks`,
// against starting `seqknock proxy` (what ssh's ProxyCommand does) and
// reading the banner from its stdout, alternating in the same run;
// medians. Goal: ratio at most 1.1.
func BenchmarkSocksFirstByte(b *testing.B) {
	w := newSocksBench(b, 224)
	const dials = 40
	var socksT, proxyT, directT []time.Duration
	for i := 0; i < dials; i++ {
		start := time.Now()
		c, _ := w.directConn(b, "")
		directT = append(directT, time.Since(start))
		c.Close()

		start = time.Now()
		c, _ = w.viaSocks(b, "")
		socksT = append(socksT, time.Since(start))
		c.Close()

		cmd := exec.Command(w.seqknock, "proxy", "--config", w.cfg, "--syn-timeout", "1s", w.cl.A4, "9000")
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+w.path("state"))
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		start = time.Now()
		// Forked from a thread in the client namespace: the child is
		// there from its start, with no ip netns exec in between.
		if err := w.cli.Do(cmd.Start); err != nil {
			b.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		took := time.Since(start)
		stdin.Close()
		cmd.Wait()
		if err != nil || line != "hi\n" {
			b.Fatalf("banner through seqknock proxy: %q %v", line, err)
		}
		proxyT = append(proxyT, took)
	}
	s, p := medianOf(socksT), medianOf(proxyT)
	b.ReportMetric(float64(s.Microseconds()), "µs-socks")
	b.ReportMetric(float64(p.Microseconds()), "µs-proxy")
	b.ReportMetric(s.Seconds()/p.Seconds(), "ratio")
	d := medianOf(directT)
	b.ReportMetric(float64(d.Microseconds()), "µs-direct")
	b.Logf("time to the first byte of a knocked service over %d alternating dials: through seqknock socks %v, seqknock proxy %v, ratio %.3f (medians; goal: at most 1.1); the knocked dial alone, in this process: %v",
		dials, s.Round(time.Microsecond), p.Round(time.Microsecond), s.Seconds()/p.Seconds(), d.Round(time.Microsecond))
}

func medianFloat(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}
