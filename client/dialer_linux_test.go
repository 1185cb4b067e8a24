//go:build linux

package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
)

var testKey = []byte("client-test-key-0123456789abcdef")

// knockHost is a server namespace with a knock table written by the nft CLI
// (independent of nftgen), a client namespace, and a TCP listener in the
// server namespace.
type knockHost struct {
	server, client *netnstest.NS
	link           *netnstest.Link
	ln             net.Listener
	port           uint16
	accepted       chan net.Conn
}

const knockTable = `
table inet knocktest {
  set valid { typeof tcp dport . tcp sequence; flags timeout; }
  set used { typeof tcp dport . tcp sequence; flags dynamic,timeout; timeout 2m; }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    tcp dport %d jump knock
  }
  chain knock {
    ct state established,related accept
    ct mark & 0x00800000 == 0x00800000 accept
    tcp flags & (fin|syn|rst|ack) == syn ct state new tcp dport . tcp sequence @valid tcp dport . tcp sequence != @used add @used { tcp dport . tcp sequence } ct mark set ct mark | 0x00800000 counter accept
    counter drop
  }
}
`

func newKnockHost(t *testing.T, subnet int) *knockHost { return newKnockHostTB(t, subnet) }

func newKnockHostTB(t testing.TB, subnet int) *knockHost {
	t.Helper()
	netnstest.RequireRoot(t, "tcpdump")
	h := &knockHost{server: netnstest.New(t, "csrv"), client: netnstest.New(t, "ccli"), port: 2222, accepted: make(chan net.Conn, 16)}
	h.link = netnstest.Connect(t, h.server, h.client, subnet)
	load := h.server.Command("nft", "-f", "-")
	load.Stdin = strings.NewReader(fmt.Sprintf(knockTable, h.port))
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("load knock table: %v: %s", err, out)
	}
	err := h.server.Do(func() error {
		var err error
		h.ln, err = net.Listen("tcp", fmt.Sprintf(":%d", h.port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.ln.Close() })
	go func() {
		for {
			c, err := h.ln.Accept()
			if err != nil {
				return
			}
			h.accepted <- c
		}
	}()
	return h
}

// allow adds the knocks of key for every slot of the counters around now.
func (h *knockHost) allow(t *testing.T, key []byte, now time.Time) {
	t.Helper()
	d, _ := totp.NewDeriver(key, "")
	var els []string
	for _, e := range totp.Window(now, totp.DefaultPeriod, 1, 0) {
		for s := uint8(0); s < 4; s++ {
			els = append(els, fmt.Sprintf("%d . %d", h.port, d.ISN(h.port, e.Counter, s)))
		}
	}
	h.server.MustRun("nft", "add", "element", "inet", "knocktest", "valid", "{ "+strings.Join(els, ", ")+" }")
}

func (h *knockHost) dial(t *testing.T, d *Dialer, addr string) (*net.TCPConn, error) {
	var conn *net.TCPConn
	err := h.client.Do(func() error {
		var err error
		conn, err = d.Dial(context.Background(), addr, h.port)
		return err
	})
	return conn, err
}

func resolveLiteral(_ context.Context, _, host string) ([]netip.Addr, error) {
	a, err := netip.ParseAddr(host)
	return []netip.Addr{a}, err
}

var seqRE = regexp.MustCompile(`Flags \[S\], seq (\d+),`)

// TestDialSYNCarriesISN captures the SYN in the server namespace and checks
// that its sequence number is exactly the derived ISN, over IPv4 and IPv6.
func TestDialSYNCarriesISN(t *testing.T) {
	h := newKnockHost(t, 41)
	now := time.Now()
	h.allow(t, testKey, now)
	// One store for both: a knock is spent by its first SYN, whatever the
	// address family, so the IPv6 dial must take the next slot.
	store := &SlotStore{Base: t.TempDir(), Sub: []string{"seqknock"}}
	for _, addr := range []string{h.link.A4, h.link.A6} {
		t.Run(addr, func(t *testing.T) {
			args := []string{"-l", "-n", "-S", "-i", h.link.AIf, "-c", "1",
				fmt.Sprintf("tcp dst port %d and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn", h.port)}
			if strings.Contains(addr, ":") {
				args[len(args)-1] = fmt.Sprintf("ip6 and tcp dst port %d and ip6[13+40] & 0x12 == 0x02", h.port)
			}
			_, out := h.server.StartTcpdump(t, args...)

			var attempts []uint32
			d := &Dialer{Key: testKey, SynTimeout: 2 * time.Second, Resolve: resolveLiteral, Reserve: store.Reserve,
				OnAttempt: func(_ netip.AddrPort, _ uint64, _ int, isn uint32) { attempts = append(attempts, isn) }}
			conn, err := h.dial(t, d, addr)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.Close()
			srv := <-h.accepted
			defer srv.Close()
			line, _ := bufio.NewReader(out).ReadString('\n')
			m := seqRE.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("no SYN in capture: %q", line)
			}
			if len(attempts) != 1 || m[1] != fmt.Sprint(attempts[0]) {
				t.Fatalf("SYN seq %s, derived ISNs %v", m[1], attempts)
			}
			// The connection carries data.
			conn.Write([]byte("ping"))
			buf := make([]byte, 4)
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := srv.Read(buf); err != nil || string(buf) != "ping" {
				t.Fatalf("data: %q %v", buf, err)
			}
		})
	}
}

// TestDialWrongKeyIsDropped: a knock of a key the server lacks gets no
// answer; by default the dial gives up after that one knock and one
// SynTimeout, spending one slot, and its message names the causes and the
// key's fingerprint. With Attempts 4 it tries every slot once.
func TestDialWrongKeyIsDropped(t *testing.T) {
	h := newKnockHost(t, 42)
	h.allow(t, testKey, time.Now())
	wrong := []byte("another-key-that-the-server-lacks")
	for _, tc := range []struct {
		attempts int
		want     string
	}{{0, "[0]"}, {4, "[0 1 2 3]"}} {
		var tries []int
		d := &Dialer{Key: wrong, SynTimeout: 300 * time.Millisecond, Resolve: resolveLiteral, Attempts: tc.attempts,
			OnAttempt: func(_ netip.AddrPort, _ uint64, slot int, _ uint32) { tries = append(tries, slot) }}
		start := time.Now()
		_, err := h.dial(t, d, h.link.A4)
		if !errors.Is(err, ErrNoAnswer) {
			t.Fatalf("wrong key: %v", err)
		}
		knocks := len(tries)
		for _, want := range []string{
			fmt.Sprintf("no SYN-ACK from %s:2222 to %d knock(s) within 300ms each: the knock was dropped or the host is down; ", h.link.A4, knocks),
			"(1) the server does not hold this key for you: compare its fingerprint " + totp.Fingerprint(wrong),
			"--clock-offset", "host firewall",
			fmt.Sprintf("%d left this period", 4-knocks),
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message lacks %q: %v", want, err)
			}
		}
		if fmt.Sprint(tries) != tc.want {
			t.Errorf("attempts %d: slots tried %v, want %s", tc.attempts, tries, tc.want)
		}
		if el := time.Since(start); el > time.Duration(knocks)*300*time.Millisecond+time.Second {
			t.Errorf("gave up after %v", el)
		}
	}
	select {
	case c := <-h.accepted:
		c.Close()
		t.Fatal("server accepted a wrong knock")
	default:
	}
}

// TestFourConnectionsFourSlots opens four connections in one period through
// the slot store: each takes its own slot, and all are admitted although
// every knock can be used once.
func TestFourConnectionsFourSlots(t *testing.T) {
	h := newKnockHost(t, 43)
	now := stayInPeriod(5 * time.Second)
	h.allow(t, testKey, now)
	store := &SlotStore{Base: t.TempDir(), Sub: []string{"seqknock"}}
	var mu sync.Mutex
	slots := map[int]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &Dialer{Key: testKey, SynTimeout: 2 * time.Second, Resolve: resolveLiteral, Reserve: store.Reserve,
				OnAttempt: func(_ netip.AddrPort, _ uint64, slot int, _ uint32) { mu.Lock(); slots[slot] = true; mu.Unlock() }}
			conn, err := h.dial(t, d, h.link.A4)
			if err != nil {
				errs <- err
				return
			}
			conn.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(slots) != 4 {
		t.Errorf("slots used %v, want 4 different", slots)
	}
	used := h.server.MustRun("nft", "list", "set", "inet", "knocktest", "used")
	if n := strings.Count(used, "2222 . "); n != 4 {
		t.Errorf("used set holds %d knocks, want 4:\n%s", n, used)
	}
	// The fifth connection of the period has no slot left.
	d := &Dialer{Key: testKey, SynTimeout: time.Second, Resolve: resolveLiteral, Reserve: store.Reserve}
	if _, err := h.dial(t, d, h.link.A4); !errors.Is(err, ErrSlotsSpent) {
		t.Errorf("fifth connection: %v", err)
	}
}

func TestDialNoCapability(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv")
	// Run the seqknock binary as nobody, without any capability.
	bin := netnstest.Build(t, "client/cmd/seqknock")
	home, err := os.MkdirTemp("", "seqknock-nocap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	os.Chown(home, 65534, 65534)
	kf := home + "/k"
	writeKeyFile(t, kf)
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "proxy", "--key-file", kf, "127.0.0.1", "9")
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs CAP_NET_ADMIN") || !strings.Contains(string(out), "setcap cap_net_admin+ep") {
		t.Fatalf("without the capability: %v: %s", err, out)
	}
	if strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("not one line: %q", out)
	}
}

// TestDialFallbackKey: during a key rotation the dialer knocks with the new
// key first and falls back to the old one, alternating, each attempt
// spending a slot of its own key.
func TestDialFallbackKey(t *testing.T) {
	h := newKnockHost(t, 58)
	now := stayInPeriod(8 * time.Second)
	newKey, oldKey := []byte("rotation-new-key-0123456789abcdef"), []byte("rotation-old-key-0123456789abcdef")
	newD, _ := totp.NewDeriver(newKey, "")
	oldD, _ := totp.NewDeriver(oldKey, "")
	counter := totp.Counter(now, totp.DefaultPeriod)
	name := func(isn uint32) string {
		for s := uint8(0); s < 4; s++ {
			switch isn {
			case newD.ISN(h.port, counter, s):
				return fmt.Sprintf("new%d", s)
			case oldD.ISN(h.port, counter, s):
				return fmt.Sprintf("old%d", s)
			}
		}
		return "?"
	}
	store := &SlotStore{Base: t.TempDir(), Sub: []string{"seqknock"}}
	attempts := 0
	dial := func(key []byte, fallback ...[]byte) ([]string, error) {
		var tries []string
		d := &Dialer{Key: key, Fallback: fallback, SynTimeout: 300 * time.Millisecond, Resolve: resolveLiteral, Reserve: store.Reserve, Attempts: attempts,
			OnAttempt: func(_ netip.AddrPort, _ uint64, _ int, isn uint32) { tries = append(tries, name(isn)) }}
		conn, err := h.dial(t, d, h.link.A4)
		if err == nil {
			conn.Close()
		}
		return tries, err
	}

	// The server knows only the old key: one attempt of the new key, then
	// the old key's.
	h.allow(t, oldKey, now)
	tries, err := dial(newKey, oldKey)
	if err != nil || fmt.Sprint(tries) != "[new0 old0]" {
		t.Errorf("old key only: tries %v, err %v; want [new0 old0]", tries, err)
	}
	// The server knows both: the new key's next slot works at once.
	h.allow(t, newKey, now)
	tries, err = dial(newKey, oldKey)
	if err != nil || fmt.Sprint(tries) != "[new1]" {
		t.Errorf("both keys: tries %v, err %v; want [new1]", tries, err)
	}
	// Neither key known: one knock of each by default; with Attempts 4
	// the attempts alternate until both keys' slots are spent.
	other1, other2 := []byte("rotation-xx1-key-0123456789abcdef"), []byte("rotation-xx2-key-0123456789abcdef")
	tries, err = dial(other1, other2)
	if !errors.Is(err, ErrNoAnswer) || len(tries) != 2 {
		t.Errorf("unknown keys: %d tries, err %v; want 2 and no answer", len(tries), err)
	}
	attempts = 4
	tries, err = dial(other1, other2)
	if !errors.Is(err, ErrNoAnswer) || len(tries) != 6 {
		t.Errorf("unknown keys, 4 attempts: %d tries, err %v; want the 6 slots left and no answer", len(tries), err)
	}
	// Both keys' slots spent: the store says so.
	if _, err := dial(other1, other2); !errors.Is(err, ErrSlotsSpent) {
		t.Errorf("all slots spent: %v", err)
	}
}

// stayInPeriod returns now, after waiting for the next period when fewer
// than need are left of this one, so a test's knocks stay in one period.
func stayInPeriod(need time.Duration) time.Time {
	now := time.Now()
	if rest := totp.NextBoundary(now, totp.DefaultPeriod).Sub(now); rest < need {
		time.Sleep(rest + 100*time.Millisecond)
		now = time.Now()
	}
	return now
}

// TestDialSaysCollision: two clients (two slot stores) knocking with one
// key spend each other's slots. The one that sees its knock time out and
// the next slot's get in at once warns; the one whose key got in before
// and now gets no answer names the collision first, with the remedy.
func TestDialSaysCollision(t *testing.T) {
	h := newKnockHost(t, 59)
	now := stayInPeriod(5 * time.Second)
	h.allow(t, testKey, now)
	dialer := func(store *SlotStore, attempts int, warned *[]string) *Dialer {
		return &Dialer{Key: testKey, SynTimeout: 300 * time.Millisecond, Resolve: resolveLiteral, Attempts: attempts,
			Reserve: store.Reserve, Admitted: store.Admit, LastAdmitted: store.LastAdmitted,
			Warnf: func(format string, a ...any) { *warned = append(*warned, fmt.Sprintf(format, a...)) }}
	}
	laptop := &SlotStore{Base: t.TempDir(), Sub: []string{"seqknock"}}
	desktop := &SlotStore{Base: t.TempDir(), Sub: []string{"seqknock"}}
	var warned []string
	conn, err := h.dial(t, dialer(laptop, 0, &warned), h.link.A4) // slot 0
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if len(warned) != 0 {
		t.Errorf("warned without a collision: %q", warned)
	}
	// The desktop's slot 0 is spent already; its slot 1 gets in.
	conn, err = h.dial(t, dialer(desktop, 2, &warned), h.link.A4)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if len(warned) != 1 || !strings.Contains(warned[0], "slot 0's knock got no answer but slot 1's got in at once: "+CollisionHint) {
		t.Errorf("desktop after a collision: warned %q", warned)
	}
	// The laptop's slot 1 is spent by the desktop: no answer, and its key
	// got in this period, so the collision comes first.
	_, err = h.dial(t, dialer(laptop, 0, &warned), h.link.A4)
	if !errors.Is(err, ErrNoAnswer) || !strings.Contains(err.Error(), "this key got in at ") ||
		!strings.Contains(err.Error(), "likely causes, in order: (1) "+CollisionHint) {
		t.Errorf("laptop after a collision: %v", err)
	}
}
