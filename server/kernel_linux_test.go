//go:build linux

package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

var (
	reExpires = regexp.MustCompile(` expires [0-9a-z]+`)
	reCounter = regexp.MustCompile(` packets [0-9]+ bytes [0-9]+`)
)

var (
	aliceKey = []byte("alice-key-0123456789abcdefghijkl")
	bobKey   = []byte("bob-key-0123456789abcdefghijklmn")
)

// testbed: a server namespace running Sync, a client and an attacker
// namespace, listeners on the protected ports.
type testbed struct {
	srv, cli, atk *netnstest.NS
	cl, al        *netnstest.Link
	k             Kernel
	dir           string
	accepted      chan net.Conn
	// listeners are the server's listening sockets (ports 22, 2222, 8080).
	listeners []net.Listener
}

func newTestbed(t testing.TB, subnet int) *testbed {
	t.Helper()
	netnstest.RequireRoot(t)
	b := &testbed{srv: netnstest.New(t, "ssrv"), cli: netnstest.New(t, "scli"), atk: netnstest.New(t, "satk"), dir: t.TempDir(), accepted: make(chan net.Conn, 32)}
	b.cl = netnstest.Connect(t, b.srv, b.cli, subnet)
	b.al = netnstest.Connect(t, b.srv, b.atk, subnet+1)
	b.k = NewKernel(b.srv.FD())
	// Plain TCP listeners, as sshd's (Go's default would be Multipath
	// TCP, which takes no socket filter).
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	for _, p := range []int{22, 2222, 8080} {
		var ln net.Listener
		if err := b.srv.Do(func() (err error) { ln, err = lc.Listen(context.Background(), "tcp", fmt.Sprintf(":%d", p)); return }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		b.listeners = append(b.listeners, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				b.accepted <- c
			}
		}()
	}
	for name, key := range map[string][]byte{"alice": aliceKey, "bob": bobKey} {
		os.WriteFile(filepath.Join(b.dir, name+".key"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	}
	return b
}

func (b *testbed) config(t testing.TB, text string) *Config {
	t.Helper()
	path := filepath.Join(b.dir, "seqknockd.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const tbConfig = `period = "%s"
tolerance = %d
realm = "lab"
[[service]]
port = 22
[[service]]
port = 2222
users = ["alice"]
[[user]]
name = "alice"
key_file = "alice.key"
[[user]]
name = "bob"
key_file = "bob.key"
`

func (b *testbed) sync(t *testing.T, c *Config) {
	t.Helper()
	if _, err := Sync(b.k, c, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// fixedSlot returns a Reserve that always hands out slot s: every dial
// with it reuses the same knock.
func fixedSlot(s int) func(string, uint64, int) (int, error) {
	return func(string, uint64, int) (int, error) { return s, nil }
}

func literal(_ context.Context, _, host string) ([]netip.Addr, error) {
	a, err := netip.ParseAddr(host)
	return []netip.Addr{a}, err
}

// knock dials from ns and reports whether the server answered. Each
// attempt is one slot only (Slots 1), so a dropped knock is one SYN timeout.
func (b *testbed) knock(t *testing.T, ns *netnstest.NS, d client.Dialer, addr string, port uint16) error {
	t.Helper()
	d.Resolve = literal
	if d.SynTimeout == 0 {
		d.SynTimeout = 700 * time.Millisecond
	}
	if d.Slots == 0 {
		d.Slots = 1
	}
	if d.Reserve == nil {
		d.Reserve = fixedSlot(0)
	}
	var conn *net.TCPConn
	err := ns.Do(func() (err error) { conn, err = d.Dial(context.Background(), addr, port); return })
	if err != nil {
		return err
	}
	defer conn.Close()
	select {
	case s := <-b.accepted:
		defer s.Close()
		conn.Write([]byte("x"))
		buf := make([]byte, 1)
		s.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := s.Read(buf); err != nil {
			return fmt.Errorf("admitted, but no data: %w", err)
		}
		return nil
	case <-time.After(3 * time.Second):
		return errors.New("connected, but the listener saw nothing")
	}
}

func TestAdmission(t *testing.T) {
	b := newTestbed(t, 60)
	cfg := b.config(t, fmt.Sprintf(tbConfig, "30s", 1))
	b.sync(t, cfg)
	alice := client.Dialer{Key: aliceKey, Realm: "lab"}
	slot := 0
	next := func() func(string, uint64, int) (int, error) { slot++; return fixedSlot(slot % 4) }
	// Stay inside one period so slots are not reused across a rotation.
	if rest := time.Until(totp.NextBoundary(time.Now(), cfg.Period)); rest < 10*time.Second {
		time.Sleep(rest + 50*time.Millisecond)
		b.sync(t, cfg)
	}
	for _, tc := range []struct {
		name string
		ns   *netnstest.NS
		addr string
		port uint16
		d    client.Dialer
		ok   bool
	}{
		{"valid v4", b.cli, b.cl.A4, 22, alice, true},
		{"valid v6", b.cli, b.cl.A6, 22, alice, true},
		{"bob on his port", b.cli, b.cl.A4, 22, client.Dialer{Key: bobKey, Realm: "lab"}, true},
		{"bob not on 2222", b.cli, b.cl.A4, 2222, client.Dialer{Key: bobKey, Realm: "lab"}, false},
		{"wrong key", b.cli, b.cl.A4, 22, client.Dialer{Key: []byte("mallory-key-0123456789abcdefghij"), Realm: "lab"}, false},
		{"wrong realm", b.cli, b.cl.A4, 22, client.Dialer{Key: aliceKey, Realm: "other"}, false},
		{"counter two periods behind", b.cli, b.cl.A4, 22, client.Dialer{Key: aliceKey, Realm: "lab", ClockOffset: -65 * time.Second}, false},
		{"counter two periods ahead", b.cli, b.cl.A4, 22, client.Dialer{Key: aliceKey, Realm: "lab", ClockOffset: 65 * time.Second}, false},
		{"one period behind, within tolerance", b.cli, b.cl.A4, 22, client.Dialer{Key: aliceKey, Realm: "lab", ClockOffset: -30 * time.Second}, true},
		{"unprotected port untouched", b.cli, b.cl.A4, 8080, client.Dialer{Key: []byte("mallory-key-0123456789abcdefghij")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.d
			d.Reserve = next()
			err := b.knock(t, tc.ns, d, tc.addr, tc.port)
			if tc.ok && err != nil {
				t.Fatalf("not admitted: %v", err)
			}
			if !tc.ok && !errors.Is(err, client.ErrNoAnswer) {
				t.Fatalf("want no SYN-ACK, got %v", err)
			}
		})
	}
	// A knock made for port 22, sent to 2222 (where alice may knock too).
	t.Run("knock for another port", func(t *testing.T) {
		d22, _ := totp.NewDeriver(aliceKey, "lab")
		isn := d22.ISN(22, totp.Counter(time.Now(), cfg.Period), 3)
		var sock net.Conn
		err := b.cli.Do(func() (err error) {
			sock, err = dialISN(b.cl.A4, 2222, isn, 700*time.Millisecond)
			return
		})
		if err == nil {
			sock.Close()
			t.Fatal("a knock for port 22 opened port 2222")
		}
	})
	st, err := GetStatus(b.k, cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Admitted.Packets != 4 || st.Dropped.Packets == 0 || st.Used != 4 {
		t.Errorf("status after the table: admitted %d dropped %d used %d", st.Admitted.Packets, st.Dropped.Packets, st.Used)
	}
	// The knock for another port above failed for its port, not for
	// dialISN: the same slot's knock made for 2222 opens 2222.
	d, _ := totp.NewDeriver(aliceKey, "lab")
	isn := d.ISN(2222, totp.Counter(time.Now(), cfg.Period), 3)
	var sock net.Conn
	if err := b.cli.Do(func() (err error) { sock, err = dialISN(b.cl.A4, 2222, isn, 2*time.Second); return }); err != nil {
		t.Fatalf("alice's knock for 2222: %v", err)
	}
	sock.Close()
}

// TestReplay: a knock admits once; the same knock again, from the same
// client or from another address, is dropped.
func TestReplay(t *testing.T) {
	b := newTestbed(t, 62)
	cfg := b.config(t, fmt.Sprintf(tbConfig, "30s", 1))
	b.sync(t, cfg)
	at := time.Now()
	d := client.Dialer{Key: aliceKey, Realm: "lab", Now: func() time.Time { return at }}
	if err := b.knock(t, b.cli, d, b.cl.A4, 22); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := b.knock(t, b.cli, d, b.cl.A4, 22); !errors.Is(err, client.ErrNoAnswer) {
		t.Fatalf("replay from the client: %v", err)
	}
	if err := b.knock(t, b.atk, d, b.al.A4, 22); !errors.Is(err, client.ErrNoAnswer) {
		t.Fatalf("replay from another address: %v", err)
	}
	if err := b.knock(t, b.atk, d, b.al.A6, 22); !errors.Is(err, client.ErrNoAnswer) {
		t.Fatalf("replay over IPv6: %v", err)
	}
	// Re-syncing never forgets a spent knock.
	b.sync(t, cfg)
	if err := b.knock(t, b.atk, d, b.al.A4, 22); !errors.Is(err, client.ErrNoAnswer) {
		t.Fatalf("replay after a sync: %v", err)
	}
	// Another slot of the same period is a fresh knock.
	d.Reserve = fixedSlot(1)
	if err := b.knock(t, b.cli, d, b.cl.A4, 22); err != nil {
		t.Fatalf("second slot: %v", err)
	}
}

// TestSynRetransmission loses the first SYN-ACK on the client side: the
// client's kernel retransmits the SYN with the spent knock, and the ct mark
// rule lets it through.
func TestSynRetransmission(t *testing.T) {
	b := newTestbed(t, 64)
	cfg := b.config(t, fmt.Sprintf(tbConfig, "30s", 1))
	b.sync(t, cfg)
	lossy := b.cli.Command("nft", "-f", "-")
	lossy.Stdin = strings.NewReader(`table inet lossy {
  set seen { type ipv4_addr . inet_service; flags dynamic; }
  chain in {
    type filter hook input priority 0; policy accept;
    tcp sport 22 tcp flags & (syn|ack) == syn|ack ip saddr . tcp dport != @seen add @seen { ip saddr . tcp dport } counter drop
  }
}`)
	if out, err := lossy.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	d := client.Dialer{Key: aliceKey, Realm: "lab", SynTimeout: 5 * time.Second}
	if err := b.knock(t, b.cli, d, b.cl.A4, 22); err != nil {
		t.Fatalf("connection with a lost SYN-ACK: %v", err)
	}
	if out := b.cli.MustRun("nft", "list", "chain", "inet", "lossy", "in"); !strings.Contains(out, "counter packets 1 ") {
		t.Fatalf("no SYN-ACK was lost, the test proves nothing:\n%s", out)
	}
	st, _ := GetStatus(b.k, cfg, time.Now())
	if st.Used != 1 {
		t.Errorf("used %d, want 1", st.Used)
	}
}

// TestFailClosed: with period 1s and tolerance 0, a knock is refused once
// the window it was synced for has passed without a new sync.
func TestFailClosed(t *testing.T) {
	b := newTestbed(t, 66)
	cfg := b.config(t, fmt.Sprintf(tbConfig, "1s", 0))
	syncedAt := time.Now()
	if _, err := Sync(b.k, cfg, syncedAt); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(totp.NextBoundary(syncedAt, cfg.Period)) + 1100*time.Millisecond)
	for _, tc := range []struct {
		name string
		at   func() time.Time
	}{{"knock of the synced period", func() time.Time { return syncedAt }}, {"knock of now", time.Now}} {
		d := client.Dialer{Key: aliceKey, Realm: "lab", Period: time.Second, Now: tc.at}
		if err := b.knock(t, b.cli, d, b.cl.A4, 22); !errors.Is(err, client.ErrNoAnswer) {
			t.Errorf("%s after the window: %v", tc.name, err)
		}
	}
	st, _ := GetStatus(b.k, cfg, time.Now())
	if st.Valid != 0 || !st.Present {
		t.Errorf("valid elements %d after expiry (present %v)", st.Valid, st.Present)
	}
}

// TestEstablishedSurvives: a connection opened before the first sync keeps
// working across syncs, a config change and teardown.
func TestEstablishedSurvives(t *testing.T) {
	b := newTestbed(t, 68)
	var conn net.Conn
	if err := b.cli.Do(func() (err error) { conn, err = net.Dial("tcp", net.JoinHostPort(b.cl.A4, "22")); return }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv := <-b.accepted
	defer srv.Close()
	ping := func(step string) {
		t.Helper()
		conn.Write([]byte(step + "\n"))
		buf := make([]byte, len(step)+1)
		srv.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := srv.Read(buf); err != nil || string(buf) != step+"\n" {
			t.Fatalf("%s: client to server: %q %v", step, buf, err)
		}
		srv.Write([]byte("ok"))
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Read(buf[:2]); err != nil {
			t.Fatalf("%s: server to client: %v", step, err)
		}
	}
	ping("before")
	cfg := b.config(t, fmt.Sprintf(tbConfig, "2s", 1))
	for i := 0; i < 3; i++ {
		b.sync(t, cfg)
		ping(fmt.Sprintf("sync-%d", i))
	}
	changed := b.config(t, strings.Replace(fmt.Sprintf(tbConfig, "3s", 2), "realm = \"lab\"", "realm = \"lab2\"\nct_mark_bit = 7", 1))
	if res, err := Sync(b.k, changed, time.Now()); err != nil || !res.RulesRebuilt {
		t.Fatalf("config change: %+v %v", res, err)
	}
	ping("after-config-change")
	// A fresh connection now needs a knock: the table works.
	var fresh net.Conn
	err := b.cli.Do(func() (err error) {
		fresh, err = (&net.Dialer{Timeout: 700 * time.Millisecond}).Dial("tcp", net.JoinHostPort(b.cl.A4, "22"))
		return
	})
	if err == nil {
		fresh.Close()
		t.Fatal("a connection without a knock got through")
	}
	if _, err := b.k.Table.Teardown(changed.Table); err != nil {
		t.Fatal(err)
	}
	ping("after-teardown")
}

// TestBadConfigChangesNothing runs `seqknockd sync` with each bad config of
// the table in config_test.go against an installed table: each fails with
// its message and leaves the ruleset as it was.
func TestBadConfigChangesNothing(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "sbad")
	bin := netnstest.Build(t, "server/cmd/seqknockd")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "k"), []byte(base64.StdEncoding.EncodeToString(aliceKey)+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "bad"), []byte(base64.StdEncoding.EncodeToString(aliceKey)+"\n"), 0o644)
	os.Chmod(filepath.Join(dir, "bad"), 0o644)
	good := filepath.Join(dir, "good.toml")
	// A day-long period: no knock of the good config expires while the
	// subtests run, so the listing before and after compares as is.
	os.WriteFile(good, []byte("period = \"86400s\"\n"+minimal), 0o600)
	if out, err := ns.Command(bin, "--config", good, "sync").CombinedOutput(); err != nil {
		t.Fatalf("good sync: %v: %s", err, out)
	}
	before := ns.MustRun("nft", "list", "ruleset")
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "x.toml")
			text := strings.ReplaceAll(tc.text, `"/k/bad"`, `"bad"`)
			os.WriteFile(path, []byte(text), 0o600)
			out, err := ns.Command(bin, "--config", path, "sync").CombinedOutput()
			if err == nil {
				t.Fatalf("sync accepted a bad config: %s", out)
			}
			want := strings.ReplaceAll(strings.ReplaceAll(tc.want, "x.toml", path), "/k/bad", filepath.Join(dir, "bad"))
			if !strings.Contains(string(out), want) || strings.Count(string(out), "\n") != 1 {
				t.Errorf("output %q\nwant one line containing %q", out, want)
			}
			if after := ns.MustRun("nft", "list", "ruleset"); reExpires.ReplaceAllString(after, "") != reExpires.ReplaceAllString(before, "") {
				t.Errorf("ruleset changed:\n%s", after)
			}
		})
	}
}

// TestRulesetNeedsNoRoot runs `seqknockd ruleset` as nobody against a
// config whose key files only root can read: it prints the ruleset with
// the config's element count.
func TestRulesetNeedsNoRoot(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv")
	bin := netnstest.Build(t, "server/cmd/seqknockd")
	dir, err := os.MkdirTemp("", "seqknock-ruleset-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	for _, n := range []string{"alice", "bob"} {
		os.WriteFile(filepath.Join(dir, n+".key"), []byte(base64.StdEncoding.EncodeToString(aliceKey)+"\n"), 0o600)
	}
	cfg := filepath.Join(dir, "seqknockd.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(tbConfig, "30s", 1)), 0o644)
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "--config", cfg, "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("ruleset as nobody: %v: %s", err, out)
	}
	// alice and bob on 22, alice on 2222: 3 x 3 counters x 4 slots.
	if !strings.HasPrefix(string(out), "# valid: 36 elements") || !strings.Contains(string(out), "table inet seqknock {") {
		t.Errorf("ruleset:\n%s", out)
	}
	// check-config does read the keys, and says it cannot.
	out, err = exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "--config", cfg, "check-config").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "permission denied") {
		t.Errorf("check-config as nobody: %v: %s", err, out)
	}
}

// TestRulesetCommandMatchesNft: what `seqknockd ruleset` prints is what
// `nft list ruleset` shows after `seqknockd sync`, counters and elements
// aside (cmp.Diff, in a fresh namespace).
func TestRulesetCommandMatchesNft(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "srule")
	bin := netnstest.Build(t, "server/cmd/seqknockd")
	dir := t.TempDir()
	for _, n := range []string{"alice", "bob"} {
		os.WriteFile(filepath.Join(dir, n+".key"), []byte(base64.StdEncoding.EncodeToString([]byte(n+"-key-0123456789abcdefghijklmnop"))+"\n"), 0o600)
	}
	cfg := filepath.Join(dir, "seqknockd.toml")
	os.WriteFile(cfg, []byte(strings.Replace(fmt.Sprintf(tbConfig, "30s", 1), "realm = \"lab\"", "realm = \"lab\"\nct_mark_bit = 12\nslots = 2", 1)), 0o600)
	want, err := exec.Command(bin, "--config", cfg, "ruleset").Output()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Command(bin, "--config", cfg, "sync").CombinedOutput(); err != nil {
		t.Fatalf("sync: %v: %s", err, out)
	}
	gotNorm := netnstest.NormalizeListing(ns.MustRun("nft", "list", "ruleset"))
	if diff := cmp.Diff(netnstest.DropComments(string(want)), gotNorm); diff != "" {
		t.Errorf("seqknockd ruleset vs nft list ruleset (-ruleset +nft):\n%s", diff)
	}
	if !strings.Contains(gotNorm, "ct mark & 0x00001000 == 0x00001000 meta mark set meta mark | 0x01000000 accept") {
		t.Errorf("mark bit 12 not in the rules:\n%s", gotNorm)
	}
}

// Sync is SyncKeeping with nothing spent before: one sync as a fresh
// seqknockd makes it.
func Sync(k Kernel, cfg *Config, now time.Time) (nftgen.Result, error) {
	return SyncKeeping(k, cfg, now, &Spent{})
}
