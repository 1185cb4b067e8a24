//go:build linux

package server

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestMetricsExport runs `seqknockd run` with both exporters in a
// namespace: the textfile and the loopback HTTP listener show the sync,
// the valid elements and, after an unknocked SYN, the drop; a
// non-loopback listen address is refused.
func TestMetricsExport(t *testing.T) {
	ns, bin, dir, cfg, _ := binBed(t, "smetr")
	prom := filepath.Join(dir, "seqknock.prom")
	if out, err := ns.Command(bin, "--config", cfg, "run", "--metrics-listen", "0.0.0.0:9810").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "want a loopback address") {
		t.Errorf("non-loopback listen: %v: %s", err, out)
	}
	log := &netnstest.Buffer{}
	daemon := ns.Command(bin, "--config", cfg, "run", "--metrics-listen", "127.0.0.1:9810", "--metrics-textfile", prom)
	daemon.Stderr = log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	waitFor(t, "first sync", func() bool { return strings.Contains(log.String(), "msg=sync") })
	// An unknocked SYN to a protected port, from inside the namespace.
	ns.Do(func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:22", 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return nil
	})
	value := func(text, name string) string {
		m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(text)
		if m == nil {
			return ""
		}
		return m[1]
	}
	var text string
	deadline := time.Now().Add(25 * time.Second)
	for {
		b, _ := os.ReadFile(prom)
		text = string(b)
		if v := value(text, `seqknock_unknocked_packets_total\{port="22"\}`); v != "" && v != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("textfile never counted the drop:\n%s\n%s", text, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// alice and bob on 22, alice on 2222: 3 x 3 counters x 4 slots.
	for name, want := range map[string]string{"seqknock_valid_elements": "36", "seqknock_sync_failures_total": "0"} {
		if got := value(text, name); got != want {
			t.Errorf("%s = %q, want %s:\n%s", name, got, want, text)
		}
	}
	if v := value(text, "seqknock_syncs_total"); v == "" || v == "0" {
		t.Errorf("no sync counted:\n%s", text)
	}
	// A plain HTTP/1.0 request on a socket made inside the namespace (an
	// http.Client would dial from another thread, outside it).
	var body []byte
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:9810", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /metrics HTTP/1.0\r\n\r\n")
		body, err = io.ReadAll(c)
		return err
	})
	if err != nil || value(string(body), "seqknock_valid_elements") != "36" {
		t.Errorf("HTTP metrics: %v:\n%s", err, body)
	}
}
