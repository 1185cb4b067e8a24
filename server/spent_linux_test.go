//go:build linux

package server

import (
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
	"golang.org/x/sys/unix"
)

// spentConfig: alice and bob on port 22, 256 slots, 60 s periods: 1,536
// valid knocks, the knocks of this counter and the next valid for at least
// a minute.
const spentConfig = `period = "60s"
tolerance = 1
slots = 256
realm = "lab"
[[service]]
port = 22
[[user]]
name = "alice"
key_file = "alice.key"
[[user]]
name = "bob"
key_file = "bob.key"
`

// synSender sends raw IPv4 SYNs from the attacker namespace to the server's
// port 22, each from a source port never used before.
type synSender struct {
	fd       int
	src, dst netip.Addr
	sport    uint16
}

func newSynSender(t testing.TB, b *testbed) *synSender {
	t.Helper()
	s := &synSender{src: netip.MustParseAddr(b.al.B4), dst: netip.MustParseAddr(b.al.A4), sport: 2000}
	if err := b.atk.Do(func() (err error) { s.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

func csum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// send sends one SYN with sequence number seq to port 22.
func (s *synSender) send(t testing.TB, seq uint32) { s.sendTCP(t, 0x02, seq, 0, nil) }

var rePackets = regexp.MustCompile(`counter packets (\d+)`)

// synAcks counts the SYN-ACKs the server sent from port 22, in a table of
// the test's own (installed by watchSynAcks).
func synAcks(t testing.TB, b *testbed) int {
	t.Helper()
	m := rePackets.FindStringSubmatch(b.srv.MustRun("nft", "list", "chain", "inet", "obs", "out"))
	if m == nil {
		t.Fatal("no SYN-ACK counter")
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func watchSynAcks(b *testbed) {
	b.srv.MustRun("nft", "add table inet obs; add chain inet obs out { type filter hook output priority 0; }; "+
		"add rule inet obs out tcp sport 22 tcp flags & (syn|ack) == syn|ack counter")
}

// replayAll sends every knock again, from new source ports, and returns
// how many got a SYN-ACK.
func replayAll(t testing.TB, b *testbed, s *synSender, knocks []uint32) int {
	t.Helper()
	before := synAcks(t, b)
	for _, k := range knocks {
		s.send(t, k)
	}
	time.Sleep(500 * time.Millisecond)
	return synAcks(t, b) - before
}

// freshKnock sends a knock nobody used and reports whether it was
// admitted: the table is in place and admits.
func freshKnock(t testing.TB, b *testbed, s *synSender, isn uint32) bool {
	t.Helper()
	before := synAcks(t, b)
	s.send(t, isn)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if synAcks(t, b) > before {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// TestSpentStaysSpent spends 1,000 knocks with raw SYNs, then replays all
// of them after each of: the table deleted by hand a moment later (the
// daemon rebuilds it), the daemon stopped and `seqknockd teardown` +
// `seqknockd sync` run by hand, and a daemon restart with
// --teardown-on-exit. No replay gets a SYN-ACK; a fresh knock does each
// time.
func TestSpentStaysSpent(t *testing.T) {
	f := newInForce(t, 74, spentConfig)
	state := filepath.Join(f.dir, "state", "state.json") // the daemon makes the directory 0700
	f.stop()
	// A state that says nothing was spent yet: without one, the daemon
	// would count the window so far as spent.
	if err := (&State{Table: f.cfg.Table}).Save(state); err != nil {
		t.Fatal(err)
	}
	f.start(t, daemonOpts{statePath: state})
	watchSynAcks(f.testbed)
	s := newSynSender(t, f.testbed)

	now := time.Now()
	c := totp.Counter(now, f.cfg.Period)
	var knocks []uint32
	fresh := map[string][]uint32{}
	for _, key := range [][]byte{aliceKey, bobKey} {
		d, _ := totp.NewDeriver(key, "lab")
		for _, counter := range []uint64{c, c + 1} {
			for slot := 0; slot < 256; slot++ {
				if slot < 250 {
					knocks = append(knocks, d.ISN(22, counter, uint8(slot)))
				} else if key[0] == 'a' && counter == c {
					fresh["alice"] = append(fresh["alice"], d.ISN(22, counter, uint8(slot)))
				}
			}
		}
	}
	// Spend them, then delete the table at once: the daemon has had no
	// sync in between, so only the kernel's admission log tells it.
	for _, k := range knocks {
		s.send(t, k)
	}
	waitFor(t, "1000 admissions", func() bool { return synAcks(t, f.testbed) >= len(knocks) })
	f.srv.MustRun("nft", "delete", "table", "inet", "seqknock")
	if n := synAcks(t, f.testbed); n != len(knocks) {
		t.Fatalf("%d SYN-ACKs for %d distinct knocks", n, len(knocks))
	}
	waitFor(t, "table rebuilt", func() bool { _, err := f.srv.Run("nft", "list", "table", "inet", "seqknock"); return err == nil })
	bin := netnstest.Build(t, "server/cmd/seqknockd")
	events := []struct {
		name string
		run  func()
	}{
		{"table deleted", func() {}},
		{"teardown + sync", func() {
			f.stop()
			for _, cmd := range []string{"teardown", "sync"} {
				if out, err := f.srv.Command(bin, "--config", f.cfg.Path, cmd, "--state", state).CombinedOutput(); err != nil {
					t.Fatalf("seqknockd %s: %v: %s", cmd, err, out)
				}
			}
			f.start(t, daemonOpts{statePath: state, teardownOnExit: true})
		}},
		{"restart with teardown on exit", func() {
			f.stop()
			if _, err := f.srv.Run("nft", "list", "table", "inet", "seqknock"); err == nil {
				t.Fatal("teardown on exit left the table")
			}
			f.start(t, daemonOpts{statePath: state})
		}},
	}
	for i, ev := range events {
		ev.run()
		if n := replayAll(t, f.testbed, s, knocks); n != 0 {
			t.Errorf("after %s: %d of %d replays admitted\n%s", ev.name, n, len(knocks), f.log.String())
		} else {
			t.Logf("after %s: 0 of %d replays admitted", ev.name, len(knocks))
		}
		if !freshKnock(t, f.testbed, s, fresh["alice"][i]) {
			t.Errorf("after %s: a fresh knock was not admitted", ev.name)
		}
	}
	if time.Since(now) > f.cfg.Period {
		t.Fatalf("the test took %v, longer than a period: its knocks may have expired", time.Since(now))
	}
	if strings.Contains(f.log.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", f.log.String())
	}
}
