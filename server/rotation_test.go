package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

const rotationConfig = `period = "30s"
[[service]]
port = 22
[[user]]
name = "alice"
key_files = [
  "new.key",
  { file = "old.key", not_after = 2026-01-01T00:01:00Z },
]
[[user]]
name = "bob"
key_files = [{ file = "/keys/bob.key", not_after = "2026-01-01T00:00:00+01:00" }]
`

func TestParseConfigKeyFiles(t *testing.T) {
	c, err := ParseConfig("/etc/seqknock/seqknockd.toml", []byte(rotationConfig), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Users[0], c.Users[1]
	if len(a.Keys) != 2 || a.Keys[0].File != "/etc/seqknock/new.key" || !a.Keys[0].NotAfter.IsZero() ||
		a.Keys[1].File != "/etc/seqknock/old.key" || !a.Keys[1].NotAfter.Equal(time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)) {
		t.Errorf("alice: %v", a)
	}
	if len(b.Keys) != 1 || !b.Keys[0].NotAfter.Equal(time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("bob: %v", b)
	}
	if s := a.String(); s != "user alice (/etc/seqknock/new.key, /etc/seqknock/old.key until 2026-01-01T00:01:00Z)" {
		t.Errorf("String: %s", s)
	}
}

// TestDesiredRotation: during the overlap both of alice's keys knock; a
// knock of the old key expires at its not_after even where its counter
// would stay longer; after not_after only the new key knocks.
func TestDesiredRotation(t *testing.T) {
	c, err := ParseConfig("/etc/seqknock/seqknockd.toml", []byte(rotationConfig), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	newD, _ := totp.NewDeriver(c.Users[0].Keys[0].Key, "")
	oldD, _ := totp.NewDeriver(c.Users[0].Keys[1].Key, "")
	notAfter := c.Users[0].Keys[1].NotAfter
	has := func(s nftgen.State, d *totp.Deriver, now time.Time) *nftgen.Element {
		isn := d.ISN(22, totp.Counter(now, 30*time.Second), 0)
		for i := range s.Valid {
			if s.Valid[i].Port == 22 && s.Valid[i].ISN == isn {
				return &s.Valid[i]
			}
		}
		return nil
	}

	before := notAfter.Add(-25 * time.Second) // overlap: old key's knocks clipped
	s := Desired(c, before)
	if e := has(s, newD, before); e == nil || !e.Expires.After(notAfter) {
		t.Errorf("before not_after, new key's knock: %+v", e)
	}
	if e := has(s, oldD, before); e == nil || !e.Expires.Equal(notAfter) {
		t.Errorf("before not_after, old key's knock should expire at not_after: %+v", e)
	}
	// bob's only key expired an hour before: he has none.
	if want := 2 * 3 * 4; len(s.Valid) != want {
		t.Errorf("%d elements, want %d (alice's two keys)", len(s.Valid), want)
	}
	if got := ExpiredKeys(c, before); len(got) != 1 || !strings.HasPrefix(got[0], "bob: /keys/bob.key until") {
		t.Errorf("expired before: %q", got)
	}

	after := notAfter
	s = Desired(c, after)
	if has(s, newD, after) == nil {
		t.Error("after not_after, new key's knock missing")
	}
	if e := has(s, oldD, after); e != nil {
		t.Errorf("after not_after, old key still knocks: %+v", e)
	}
	if want := 3 * 4; len(s.Valid) != want {
		t.Errorf("%d elements after, want %d", len(s.Valid), want)
	}
	for _, e := range s.Valid {
		if !e.Expires.After(after) {
			t.Errorf("element already expired: %+v", e)
		}
	}
	if got := ExpiredKeys(c, after); len(got) != 2 {
		t.Errorf("expired after: %q", got)
	}
}

// TestDaemonLogsExpiredKeyOnce: the sync after not_after drops the key and
// logs it, once; later syncs do not repeat the line.
func TestDaemonLogsExpiredKeyOnce(t *testing.T) {
	// The clock stands on period boundaries, so no rotation fires during
	// the test; the reloads sync.
	text := strings.NewReplacer("2026-01-01T00:00:00+01:00", "2027-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:00:31Z").Replace(rotationConfig)
	c, err := ParseConfig("/etc/seqknock/seqknockd.toml", []byte(text), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	fk := &fakeKernel{}
	log := &netnstest.Buffer{}
	reload := make(chan os.Signal, 1)
	d := &Daemon{ConfigPath: "x", Load: func(string) (*Config, error) { return c, nil }, Kernel: fk.kernel(), Now: clock,
		Log: slog.New(slog.NewTextHandler(log, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, reload) }()
	waitFor(t, "first sync", func() bool { return fk.count() == 1 })
	if strings.Contains(log.String(), "key expired") {
		t.Fatalf("logged before not_after:\n%s", log)
	}
	mu.Lock()
	now = now.Add(30 * time.Second)
	mu.Unlock()
	for i := 2; i <= 4; i++ {
		reload <- os.Interrupt // each reload syncs
		waitFor(t, "sync", func() bool { return fk.count() == i })
	}
	cancel()
	<-done
	if n := strings.Count(log.String(), "key expired"); n != 1 {
		t.Fatalf("%d expiry lines, want 1:\n%s", n, log)
	}
	if !strings.Contains(log.String(), `key="alice: /etc/seqknock/old.key until`) {
		t.Errorf("expiry line does not name the key:\n%s", log)
	}
	fk.mu.Lock()
	last := fk.applied[len(fk.applied)-1]
	fk.mu.Unlock()
	if len(last.Valid) != 2*3*4 { // alice's new key and bob's
		t.Errorf("last sync has %d elements", len(last.Valid))
	}
}

const dropInMain = `period = "30s"
include = ["seqknockd.d/*.toml"]
[[service]]
port = 22
[[user]]
name = "alice"
key_file = "alice.key"
`

// writeDropIns writes the main config and drop-ins into a temporary
// directory and returns the main config's path.
func writeDropIns(t *testing.T, main string, dropIns map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "seqknockd.d"), 0o700)
	for name, text := range dropIns {
		if err := os.WriteFile(filepath.Join(dir, "seqknockd.d", name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "seqknockd.toml")
	if err := os.WriteFile(p, []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func loadDropIns(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data, fakeKeys)
}

func TestConfigDropIns(t *testing.T) {
	p := writeDropIns(t, dropInMain, map[string]string{
		"20-web.toml":   "[[service]]\nport = 443\nusers = [\"bob\"]\n",
		"10-users.toml": "[[user]]\nname = \"bob\"\nkey_file = \"bob.key\"\n",
		"README":        "not a toml file",
	})
	c, err := loadDropIns(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	if len(c.Users) != 2 || c.Users[1].Name != "bob" || c.Users[1].Keys[0].File != filepath.Join(dir, "seqknockd.d", "bob.key") {
		t.Errorf("users: %v", c.Users)
	}
	if len(c.Services) != 2 || c.Services[1].Port != 443 {
		t.Errorf("services: %+v", c.Services)
	}
	if len(c.Files) != 2 || filepath.Base(c.Files[0]) != "10-users.toml" {
		t.Errorf("files: %v", c.Files)
	}
	// No drop-in directory at all is fine: fleets add files later.
	os.RemoveAll(filepath.Join(dir, "seqknockd.d"))
	if _, err := loadDropIns(p); err != nil {
		t.Errorf("without drop-ins: %v", err)
	}
}

func TestConfigDropInsBad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		main    string
		dropIns map[string]string
		want    string // with D for the drop-in directory, M for the main file
	}{
		{"user in two files", dropInMain, map[string]string{"a.toml": "\n[[user]]\nname = \"alice\"\nkey_file = \"x\"\n"},
			`D/a.toml:3: user[0].name: "alice" already defined in M:6 (user[0])`},
		{"user in two drop-ins", dropInMain, map[string]string{
			"a.toml": "[[user]]\nname = \"bob\"\nkey_file = \"x\"\n",
			"b.toml": "[[user]]\nname = \"carol\"\nkey_file = \"x\"\n[[user]]\nname = \"bob\"\nkey_file = \"y\"\n"},
			`D/b.toml:5: user[1].name: "bob" already defined in D/a.toml:2 (user[0])`},
		{"service in two files", dropInMain, map[string]string{"a.toml": "[[service]]\nport = 22\n"},
			`D/a.toml:2: service[0].port: 22 already protected in M:4 (service[0])`},
		{"setting in a drop-in", dropInMain, map[string]string{"a.toml": "period = \"10s\"\n"},
			`D/a.toml:1: period: only [[user]] and [[service]] tables may be in a drop-in`},
		{"budget in a drop-in", dropInMain, map[string]string{"a.toml": "[[user]]\nname = \"b\"\nkey_file = \"x\"\n", "b.toml": "\nlockout_lookup_limit = \"1/second\"\n"},
			`D/b.toml:2: lockout_lookup_limit: only [[user]] and [[service]] tables may be in a drop-in`},
		{"include in a drop-in", dropInMain, map[string]string{"a.toml": "include = [\"x\"]\n"},
			`D/a.toml:1: include: only [[user]] and [[service]]`},
		{"unknown key in a drop-in", dropInMain, map[string]string{"a.toml": "[[user]]\nname = \"b\"\nkeyfile = \"x\"\n"},
			`D/a.toml:3: user.keyfile: unknown key`},
		{"syntax in a drop-in", dropInMain, map[string]string{"a.toml": "[[user]\n"}, `D/a.toml:2: expected end of table array name`},
		{"service user in no file", dropInMain, map[string]string{"a.toml": "[[service]]\nport = 2222\nusers = [\"zed\"]\n"},
			`D/a.toml:3: service[0].users: no [[user]] named "zed"`},
		{"bad pattern", strings.Replace(dropInMain, "seqknockd.d/*.toml", "[", 1), nil, `M:2: include: `},
		{"include matches main", strings.Replace(dropInMain, "seqknockd.d/*.toml", "*.toml", 1), nil, `M:2: include: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeDropIns(t, tc.main, tc.dropIns)
			_, err := loadDropIns(p)
			want := strings.NewReplacer("D/", filepath.Join(filepath.Dir(p), "seqknockd.d")+"/", "M:", p+":").Replace(tc.want)
			if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %v\nwant one line containing %q", err, want)
			}
		})
	}
}
