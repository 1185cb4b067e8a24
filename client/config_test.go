package client

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client/broker"
)

const clientConfig = `# client config
[[host]]
match = "*.example.net"
port = 22
key_file = "~/.config/seqknock/example.key"
realm = "fleet"

[[host]]
match = "db1"
key_file = "db1.key"
period = "10s"
slots = 2

[[host]]
match = "rotating"
key_files = ["~/.config/seqknock/new.key", "old.key"]

[[host]]
match = "signed"
key_file = "s.key"
sign = "tcp-md5"
sign_key_file = "~/.config/seqknock/ssh.sign"

[[host]]
match = "bound"
key_file = "b.key"
bind_source_port = true
`

func TestClientConfig(t *testing.T) {
	c, err := ParseConfig("/home/u/.config/seqknock/client.toml", []byte(clientConfig), "/home/u")
	if err != nil {
		t.Fatal(err)
	}
	e := c.Lookup("a.example.net", 22)
	if e == nil || e.KeyFile != "/home/u/.config/seqknock/example.key" || e.Realm != "fleet" || e.Period != 30*time.Second || e.Slots != 4 {
		t.Fatalf("lookup: %+v", e)
	}
	if c.Lookup("a.example.net", 2222) != nil {
		t.Error("port-bound entry matched another port")
	}
	if e := c.Lookup("db1", 5432); e == nil || e.KeyFile != "/home/u/.config/seqknock/db1.key" || e.Period != 10*time.Second || e.Slots != 2 {
		t.Errorf("db1: %+v", e)
	}
	if c.Lookup("example.net", 22) != nil {
		t.Error("pattern matched too much")
	}
	if e := c.Lookup("db1", 22); len(e.Fallback) != 0 {
		t.Errorf("db1 has fallbacks: %v", e.Fallback)
	}
	if e := c.Lookup("rotating", 22); e == nil || e.KeyFile != "/home/u/.config/seqknock/new.key" ||
		len(e.Fallback) != 1 || e.Fallback[0] != "/home/u/.config/seqknock/old.key" {
		t.Errorf("rotating: %+v", e)
	}
	if e := c.Lookup("signed", 22); e == nil || e.Sign != "tcp-md5" || e.SignKeyFile != "/home/u/.config/seqknock/ssh.sign" {
		t.Errorf("signed: %+v", e)
	}
	if e := c.Lookup("db1", 22); e.Sign != "" || e.SignKeyFile != "" {
		t.Errorf("db1 is signed: %+v", e)
	}
	if e := c.Lookup("bound", 22); e == nil || !e.BindSourcePort {
		t.Errorf("bound: %+v", e)
	}
	if e := c.Lookup("db1", 22); e.BindSourcePort {
		t.Errorf("db1 binds its source port: %+v", e)
	}
}

// TestClientConfigBroker: broker = names the broker's socket (~/ is the
// home); --broker overrides it; without either, the default.
func TestClientConfigBroker(t *testing.T) {
	for _, tc := range []struct{ text, flag, want string }{
		{"broker = \"/srv/b.sock\"\n", "", "/srv/b.sock"},
		{"broker = \"~/b.sock\"\n[[host]]\nmatch = \"x\"\nkey_file = \"k\"\n", "", "/h/b.sock"},
		{"broker = \"/srv/b.sock\"\n", "/flag.sock", "/flag.sock"},
		{"", "", broker.DefaultPath},
	} {
		c, err := ParseConfig("c.toml", []byte(tc.text), "/h")
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		if got := BrokerPath(c, tc.flag); got != tc.want {
			t.Errorf("%q with --broker %q: %q, want %q", tc.text, tc.flag, got, tc.want)
		}
	}
}

// TestClientConfigSocks: socks_user and socks_password_file come
// together; the file is relative to the config's directory, ~/ the home.
func TestClientConfigSocks(t *testing.T) {
	for _, tc := range []struct{ text, user, file string }{
		{"", "", ""},
		{"socks_user = \"me\"\nsocks_password_file = \"socks.pass\"\n", "me", "/etc/x/socks.pass"},
		{"socks_user = \"me\"\nsocks_password_file = \"~/p\"\n", "me", "/h/p"},
	} {
		c, err := ParseConfig("/etc/x/c.toml", []byte(tc.text), "/h")
		if err != nil || c.SocksUser != tc.user || c.SocksPasswordFile != tc.file {
			t.Errorf("%q: %v, user %q file %q; want %q %q", tc.text, err, c.SocksUser, c.SocksPasswordFile, tc.user, tc.file)
		}
	}
}

func TestClientConfigErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[[host]]\nmatch = \"x\"\n", "c.toml:1: host[0].key_file: missing"},
		{"[[host]]\nkey_file = \"k\"\n", "c.toml:1: host[0].match: missing"},
		{"[[host]]\nmatch = \"x\"\nkey_file = \"k\"\n[[host]]\nmatch = \"y\"\nkey_file = \"k\"\nport = 0\n", "c.toml:4: host[1].port: 0 out of range"},
		{"[[host]]\nmatch = \"x\"\nkey_file = \"k\"\nperiod = \"1.5s\"\n", "c.toml:1: host[0].period"},
		{"[[host]]\nmatch = \"x\"\nkey_file = \"k\"\nslots = 300\n", "c.toml:1: host[0].slots: 300 out of range"},
		{"[[host]]\nmatch = \"[\"\nkey_file = \"k\"\n", "c.toml:1: host[0].match"},
		{"[[host]]\nmatch = \"x\"\nkeyfile = \"k\"\n", "c.toml:3: host.keyfile: unknown key"},
		{"[[host]\n", "c.toml:2: expected end of table array name"},
		{"[[host]]\nmatch = \"x\"\nkey_file = \"k\"\nkey_files = [\"k2\"]\n", "c.toml:1: host[0].key_files: set key_file or key_files, not both"},
		{"[[host]]\nmatch = \"x\"\nkey_files = []\n", "c.toml:1: host[0].key_files: empty"},
		{"[[host]]\nmatch = \"x\"\nkey_files = [\"a\", \"\"]\n", "c.toml:1: host[0].key_files[1]: empty"},
		{"[[host]]\nmatch = \"x\"\nkey_files = [\"a\", \"./a\"]\n", "c.toml:1: host[0].key_files[1]: listed twice"},
		{"[[host]]\nmatch = \"x\"\nkey_files = \"a\"\n", "c.toml:3: host.key_files: incompatible types"},
		{"[[host]]\nmatch = \"x\"\nkey_file = \"k\"\nsign = \"md5\"\nsign_key_file = \"s\"\n", "c.toml:1: host[0].sign: \"md5\": want \"tcp-md5\""},
		{"[[host]]\nmatch = \"x\"\nkey_file = \"k\"\nbind_source_port = 1\n", "c.toml:4: host.bind_source_port: incompatible types"},
		{"[[host]]\nmatch = \"x\"\nkey_file = \"k\"\nsign = \"tcp-ao\"\nsign_key_file = \"s\"\n", "c.toml:1: host[0].sign: "},
		{"[[host]]\nmatch = \"x\"\nkey_file = \"k\"\nsign = \"tcp-md5\"\n", "c.toml:1: host[0].sign_key_file: missing"},
		{"[[host]]\nmatch = \"x\"\nkey_file = \"k\"\nsign_key_file = \"s\"\n", "c.toml:1: host[0].sign: missing: sign_key_file is set"},
		{"# the broker\nbroker = \"run/b.sock\"\n", "c.toml:2: broker: \"run/b.sock\": want an absolute path"},
		{"broker = 3\n", "c.toml:1: broker: incompatible types"},
		{"socks_user = \"me\"\n", "c.toml:1: socks_password_file: missing or empty"},
		{"socks_password_file = \"p\"\n", "c.toml:1: socks_user: missing or empty"},
		{"socks_user = \"\"\nsocks_password_file = \"p\"\n", "c.toml:1: socks_user: missing or empty"},
	} {
		_, err := ParseConfig("c.toml", []byte(tc.text), "/h")
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line with %q", tc.text, err, tc.want)
		}
	}
	if c, err := LoadConfig("/nonexistent/client.toml", "/h", true); err != nil || len(c.Hosts) != 0 {
		t.Errorf("missing default config: %v", err)
	}
	if _, err := LoadConfig("/nonexistent/client.toml", "/h", false); err == nil {
		t.Error("missing explicit config accepted")
	}
}

func TestSlotStore(t *testing.T) {
	s := &SlotStore{Base: t.TempDir(), Sub: []string{"seqknock"}}
	id := SlotID(testKey, "", 22)
	for want := 0; want < 4; want++ {
		if got, err := s.Reserve(id, 100, 4); err != nil || got != want {
			t.Fatalf("reserve %d: %d %v", want, got, err)
		}
	}
	if _, err := s.Reserve(id, 100, 4); !errors.Is(err, ErrSlotsSpent) {
		t.Fatalf("fifth: %v", err)
	}
	if got, _ := s.Reserve(id, 101, 4); got != 0 {
		t.Fatalf("new period starts at slot %d", got)
	}
	if got, _ := s.Reserve(SlotID(testKey, "", 2222), 101, 4); got != 0 {
		t.Fatalf("another port shares slots: %d", got)
	}
	if SlotID(testKey, "", 22) == SlotID(testKey, "r", 22) || SlotID(testKey, "", 22) == SlotID([]byte("another-key-0123456789abcdefghij"), "", 22) {
		t.Error("slot ids collide across realm or key")
	}
	if fi, _ := os.Stat(s.Path()); fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %o", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(s.Path()); strings.Contains(string(b), string(testKey)) {
		t.Error("state file holds the key")
	}
	// Parallel reservations never share a slot.
	id = SlotID(testKey, "par", 22)
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := (&SlotStore{Base: s.Base, Sub: s.Sub}).Reserve(id, 7, 16); err == nil {
				mu.Lock()
				seen[got]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 16 {
		t.Errorf("parallel reservations: %v", seen)
	}
	// A damaged file costs only slot reuse.
	os.WriteFile(s.Path(), []byte("{not json"), 0o600)
	if _, err := s.Reserve(id, 8, 4); err != nil {
		t.Errorf("damaged state: %v", err)
	}
}

// TestSlotStoreRefusesLinks: a symbolic link anywhere below the base
// (the state file, the seqknock directory, ~/.local) is refused, never
// followed, and its target stays as it was; what the store creates is
// 0700 and 0600, and an existing state directory open to others is closed.
func TestSlotStoreRefusesLinks(t *testing.T) {
	sub := []string{".local", "state", "seqknock"}
	fresh := func() (home, target string) {
		home, other := t.TempDir(), t.TempDir()
		target = filepath.Join(other, "precious")
		if err := os.WriteFile(target, []byte("precious bytes\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return home, target
	}
	for _, tc := range []struct {
		name string
		link func(home, target string)
	}{
		{"state file", func(home, target string) {
			os.MkdirAll(filepath.Join(home, ".local/state/seqknock"), 0o700)
			os.Symlink(target, filepath.Join(home, ".local/state/seqknock/slots.json"))
		}},
		{"state dir", func(home, target string) {
			os.MkdirAll(filepath.Join(home, ".local/state"), 0o700)
			os.Symlink(filepath.Dir(target), filepath.Join(home, ".local/state/seqknock"))
		}},
		{"dot local", func(home, target string) {
			os.MkdirAll(filepath.Join(filepath.Dir(target), "state/seqknock"), 0o700)
			os.Symlink(filepath.Dir(target), filepath.Join(home, ".local"))
		}},
		{"dangling state file", func(home, target string) {
			os.MkdirAll(filepath.Join(home, ".local/state/seqknock"), 0o700)
			os.Symlink(target+".new", filepath.Join(home, ".local/state/seqknock/slots.json"))
		}},
	} {
		home, target := fresh()
		tc.link(home, target)
		_, err := (&SlotStore{Base: home, Sub: sub}).Reserve("x", 1, 4)
		if err == nil || !strings.Contains(err.Error(), "symbolic link") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want a one-line refusal naming the symbolic link", tc.name, err)
		}
		if b, _ := os.ReadFile(target); string(b) != "precious bytes\n" {
			t.Errorf("%s: target now holds %q", tc.name, b)
		}
		for _, p := range []string{target + ".new", filepath.Join(filepath.Dir(target), "slots.json"), filepath.Join(filepath.Dir(target), "state/seqknock/slots.json")} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s: created %s through the link", tc.name, p)
			}
		}
	}
	home, _ := fresh()
	s := &SlotStore{Base: home, Sub: sub}
	if _, err := s.Reserve("x", 1, 4); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{".local": 0o700, ".local/state": 0o700, ".local/state/seqknock": 0o700, ".local/state/seqknock/slots.json": 0o600} {
		if fi, err := os.Lstat(filepath.Join(home, p)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v mode %v, want %o", p, err, fi.Mode().Perm(), want)
		}
	}
	os.Chmod(filepath.Join(home, ".local/state/seqknock"), 0o755)
	os.Chmod(s.Path(), 0o644)
	if _, err := s.Reserve("x", 1, 4); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(home, ".local/state/seqknock")); fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir left %o", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(s.Path()); fi.Mode().Perm() != 0o600 {
		t.Errorf("state file left %o", fi.Mode().Perm())
	}
}

type nopCloser struct{ strings.Builder }

func (*nopCloser) Close() error { return nil }

// TestRelayHalfClose: the relay shuts the write side when stdin ends, and
// still delivers what the peer sends after that.
func TestRelayHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 64)
		var got []byte
		for {
			n, err := c.Read(b)
			got = append(got, b[:n]...)
			if err != nil {
				break // EOF: the relay half-closed
			}
		}
		c.Write([]byte("reply-after-eof:" + string(got)))
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	out := &nopCloser{}
	done := make(chan error, 1)
	go func() { done <- Relay(conn.(*net.TCPConn), strings.NewReader("request"), out) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not end")
	}
	if out.String() != "reply-after-eof:request" {
		t.Fatalf("got %q", out.String())
	}
}

// TestSlotStoreShrinks: the file is written over in place and cut when it
// shrinks (periods long gone are forgotten), so what is left is exactly
// the new state, never the old one's tail; reservations racing with the
// shrinking writes still never share a slot.
func TestSlotStoreShrinks(t *testing.T) {
	s := &SlotStore{Base: t.TempDir(), Sub: []string{"seqknock"}}
	for p := uint16(1); p <= 50; p++ {
		if _, err := s.Reserve(SlotID(testKey, "", p), 1, 4); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.Stat(s.Path())
	id := SlotID(testKey, "", 22)
	if got, err := s.Reserve(id, 1000, 4); err != nil || got != 0 {
		t.Fatalf("reserve after the old periods: %d %v", got, err)
	}
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	var entries map[string]slotEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		t.Fatalf("state after shrinking is not JSON (%d bytes, was %d): %v", len(b), before.Size(), err)
	}
	if want := map[string]slotEntry{id: {Counter: 1000, Next: 1, Used: map[uint64]int{1000: 1}}}; !reflect.DeepEqual(entries, want) {
		t.Errorf("state after shrinking: %v, want %v", entries, want)
	}
	// Racing: each reservation of a new period shrinks the file again.
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &SlotStore{Base: s.Base, Sub: s.Sub}
			if i%2 == 1 { // an old period's entry, forgotten by the next
				st.Reserve(SlotID(testKey, "", uint16(1000+i)), 1, 4)
				return
			}
			if got, err := st.Reserve(id, 2000, 16); err == nil {
				mu.Lock()
				seen[got]++
				mu.Unlock()
			} else {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(seen) != 16 {
		t.Errorf("parallel reservations while shrinking: %v", seen)
	}
}
