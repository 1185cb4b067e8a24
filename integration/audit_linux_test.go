//go:build linux

package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestAuditAndMetrics: three users knock from three sources; `seqknockd
// run` logs three audit lines, each with the right user, source and port,
// within 1 s of the connection. 10,000 random SYNs from a fourth source
// make at most a few summary lines and no line per packet. The metrics
// textfile counts the three admissions and the drops.
func TestAuditAndMetrics(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 140, 30*time.Second)
	third := netnstest.New(t, "eaud")
	tl := netnstest.Connect(t, w.srv, third, 142)
	keys := map[string][]byte{"alice": aliceKey, "bob": []byte("e2e-bob-key-0123456789abcdefghijk"), "carol": []byte("e2e-carol-key-0123456789abcdefghi")}
	cfg := "period = \"30s\"\nrealm = \"lab\"\n[[service]]\nport = 22\n"
	for name, k := range keys {
		w.writeKey(name+".key", k)
		cfg += fmt.Sprintf("[[user]]\nname = %q\nkey_file = %q\n", name, name+".key")
	}
	if err := os.WriteFile(w.path("seqknockd.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := w.path("seqknock.prom")
	w.startDaemon("--metrics-textfile", prom)

	type knock struct {
		user string
		ns   *netnstest.NS
		dst  string // the server's address on that source's link
		src  string
	}
	knocks := []knock{
		{"alice", w.cli, w.cl.A4, w.cl.B4},
		{"bob", w.atk, w.al.A4, w.al.B4},
		{"carol", third, tl.A4, tl.B4},
	}
	// Source ports of the knocked connections: the flood below leaves them
	// out, since bob knocks from the flood's own address, and a random SYN
	// on his closed connection's tuple belongs to that (marked) flow in
	// conntrack instead of reaching the drop rule.
	knocked := map[int]bool{}
	for _, k := range knocks {
		d := &client.Dialer{Key: keys[k.user], Realm: "lab", SynTimeout: 3 * time.Second,
			Resolve: func(_ context.Context, _, host string) ([]netip.Addr, error) {
				return []netip.Addr{netip.MustParseAddr(host)}, nil
			}}
		var conn *net.TCPConn
		if err := k.ns.Do(func() (err error) { conn, err = d.Dial(context.Background(), k.dst, 22); return }); err != nil {
			t.Fatalf("%s: %v", k.user, err)
		}
		sport := conn.LocalAddr().(*net.TCPAddr).Port
		knocked[sport] = true
		conn.Close()
		start := time.Now()
		line := regexp.MustCompile(`msg="knock admitted" user=` + k.user + ` port=22 src=` + regexp.QuoteMeta(k.src) + ` sport=` + strconv.Itoa(sport) + ` counter=\d+ slot=\d`)
		for !line.MatchString(w.daemonLog.String()) {
			if time.Since(start) > time.Second {
				t.Fatalf("no audit line for %s from %s:%d within 1 s:\n%s", k.user, k.src, sport, w.daemonLog)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s: audit line after %v", k.user, time.Since(start).Round(time.Millisecond))
	}

	// 10,000 SYNs with random sequence numbers from the attacker's link.
	tmpl := synTemplate(w.al.A4, 22)
	src := netip.MustParseAddr(w.al.B4)
	fd := rawSender(t, w.atk)
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 10000
	for i := 0; i < n; i++ {
		sport := 1024 + rng.IntN(64000)
		for knocked[sport] {
			sport = 1024 + rng.IntN(64000)
		}
		if err := sendRaw(fd, rewriteIPv4(tmpl, src, uint16(sport), rng.Uint32()|1)); err != nil {
			t.Fatal(err)
		}
	}
	// The daemon logs drop summaries every 10 s at most; wait for one.
	deadline := time.Now().Add(25 * time.Second)
	for !strings.Contains(w.daemonLog.String(), "unknocked packets dropped") {
		if time.Now().After(deadline) {
			t.Fatalf("no drop summary:\n%s", w.daemonLog)
		}
		time.Sleep(100 * time.Millisecond)
	}
	log := w.daemonLog.String()
	if n := strings.Count(log, "unknocked packets dropped"); n > 3 {
		t.Errorf("%d drop summary lines for one source, want at most a few:\n%s", n, log)
	}
	if n := strings.Count(log, "knock admitted"); n != 3 {
		t.Errorf("%d audit lines, want 3:\n%s", n, log)
	}
	if !strings.Contains(log, `msg="unknocked packets dropped" src=`+w.al.B4) {
		t.Errorf("the summary does not name the source:\n%s", log)
	}
	if lines := strings.Count(log, "\n"); lines > 40 {
		t.Errorf("%d log lines: a line per packet?\n%s", lines, log)
	}

	// The metrics, written every 10 s.
	deadline = time.Now().Add(25 * time.Second)
	for {
		b, _ := os.ReadFile(prom)
		text := string(b)
		ok := true
		for _, u := range []string{"alice", "bob", "carol"} {
			ok = ok && strings.Contains(text, `seqknock_admitted_knocks_total{user="`+u+`",port="22"} 1`+"\n")
		}
		// A flood from one source is mostly dropped by the guess limit,
		// before the per-port count: the two together count it all.
		m := regexp.MustCompile(`\nseqknock_unknocked_packets_total\{port="22"\} (\d+)\n`).FindStringSubmatch(text)
		l := regexp.MustCompile(`\nseqknock_lockout_drops_total (\d+)\n`).FindStringSubmatch(text)
		if ok && m != nil && l != nil {
			v, _ := strconv.Atoi(m[1])
			lv, _ := strconv.Atoi(l[1])
			if v+lv >= n && lv > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics do not count 3 admissions and %d drops:\n%s", n, text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
