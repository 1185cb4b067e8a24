package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/server"
	"github.com/seqknock/seqknock/totp"
	"github.com/seqknock/seqknock/totp/keyfile"
)

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(append([]string{"seqknock"}, args...), strings.NewReader(""), &o, &e)
	return o.String(), e.String(), code
}

func writeKey(t *testing.T, key []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// requireTool skips when a tool is missing, except under CI, where every
// test must run.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// TestISNAgainstReference compares `seqknock isn` with the independent
// Python implementation in totp/testdata on inputs the vectors do not list.
func TestISNAgainstReference(t *testing.T) {
	py := requireTool(t, "python3")
	ref := filepath.Join("..", "..", "..", "totp", "testdata", "isn_v1_ref.py")
	keys := [][]byte{
		bytes.Repeat([]byte{0x42}, 16),
		func() []byte {
			b := make([]byte, 64)
			for i := range b {
				b[i] = byte(255 - i)
			}
			return b
		}(),
		[]byte("exactly-32-bytes-of-key-material"),
	}
	cases := []struct {
		port    string
		counter string
		slot    string
		realm   string
	}{
		{"22", "18446744073709551615", "255", "fleet-a"},
		{"65535", "0", "0", "ünïcode réalm"},
		{"1", "9223372036854775807", "3", strings.Repeat("z", 255)},
		{"2222", "58812345", "1", ""},
	}
	for ki, key := range keys {
		kf := writeKey(t, key)
		b64 := base64.StdEncoding.EncodeToString(key)
		for _, tc := range cases {
			out, err := exec.Command(py, ref, b64, tc.port, tc.counter, tc.slot, tc.realm).Output()
			if err != nil {
				t.Fatalf("reference: %v", err)
			}
			want := strings.TrimSpace(string(out))
			args := []string{"isn", "--key-file", kf, "--port", tc.port, "--counter", tc.counter, "--slot", tc.slot, "--slots", "256"}
			if tc.realm != "" {
				args = append(args, "--realm", tc.realm)
			}
			got, errOut, code := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("key %d %v: exit %d: %s", ki, tc, code, errOut)
			}
			if strings.TrimSpace(got) != want {
				t.Errorf("key %d (%d bytes) port %s counter %s slot %s realm %q: seqknock %q, reference %q",
					ki, len(key), tc.port, tc.counter, tc.slot, tc.realm, strings.TrimSpace(got), want)
			}
		}
	}
}

func TestISNOutputForms(t *testing.T) {
	kf := writeKey(t, func() []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}())
	out, _, code := runCLI(t, "isn", "--key-file", kf, "--port", "22", "--counter", "58000000", "--slot", "3")
	if code != 0 || out != "3644611392\n" {
		t.Fatalf("single: %q exit %d", out, code)
	}
	out, _, code = runCLI(t, "isn", "--key-file", kf, "--port", "22", "--counter", "58000000", "--all-slots")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || lines[3] != "3 3644611392" {
		t.Fatalf("all slots: %q exit %d", out, code)
	}
	// --at is the counter of that instant: 2025-02-19T21:20:00Z is unix 1740000000, counter 58000000.
	out, _, code = runCLI(t, "isn", "--key-file", kf, "--port", "443", "--at", "2025-02-19T21:20:00Z")
	if code != 0 || out != "4170546255\n" {
		t.Fatalf("--at: %q exit %d", out, code)
	}
	out, _, code = runCLI(t, "isn", "--key-file", kf, "--port", "22")
	if _, err := strconv.ParseUint(strings.TrimSpace(out), 10, 32); code != 0 || err != nil {
		t.Fatalf("now: %q exit %d", out, code)
	}
}

func TestISNErrors(t *testing.T) {
	key := []byte("exactly-32-bytes-of-key-material")
	kf := writeKey(t, key)
	loose := writeKey(t, key)
	os.Chmod(loose, 0o644)
	short := writeKey(t, make([]byte, 8))
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"isn", "--port", "22"}, 2, "required"},
		{[]string{"isn", "--key-file", kf, "--port", "0"}, 2, "--port 0 out of range"},
		{[]string{"isn", "--key-file", kf, "--port", "22", "--slot", "4"}, 2, "--slot 4 out of range 0..3"},
		{[]string{"isn", "--key-file", kf, "--port", "22", "--slot", "1", "--all-slots"}, 2, "exclude"},
		{[]string{"isn", "--key-file", kf, "--port", "22", "--counter", "1", "--at", "2025-01-01T00:00:00Z"}, 2, "exclude"},
		{[]string{"isn", "--key-file", kf, "--port", "22", "--at", "noon"}, 2, "RFC 3339"},
		{[]string{"isn", "--key-file", kf, "--port", "22", "--nope"}, 2, "unknown flag --nope"},
		{[]string{"isn", "--key-file", kf, "--port", "22", "--period", "1500ms"}, 2, "whole number of seconds"},
		{[]string{"isn", "--key-file", loose, "--port", "22"}, 1, "chmod 600 " + loose},
		{[]string{"isn", "--key-file", short, "--port", "22"}, 1, "key is 8 bytes"},
		{[]string{"isn", "--key-file", kf + ".missing", "--port", "22"}, 1, "no such file"},
	} {
		out, errOut, code := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d stderr %q, want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
		if out != "" {
			t.Errorf("%v: printed %q on stdout", tc.args, out)
		}
		if strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: stderr is not one line: %q", tc.args, errOut)
		}
	}
}

func TestKeygen(t *testing.T) {
	out, _, code := runCLI(t, "keygen")
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if code != 0 || err != nil || len(k) != 32 {
		t.Fatalf("stdout key: %q exit %d %v", out, code, err)
	}
	p := filepath.Join(t.TempDir(), "k")
	if _, e, code := runCLI(t, "keygen", "-o", p); code != 0 {
		t.Fatalf("keygen -o: %s", e)
	}
	first, _ := os.ReadFile(p)
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", fi.Mode().Perm())
	}
	if _, e, code := runCLI(t, "keygen", "-o", p); code == 0 || !strings.Contains(e, "--force") {
		t.Fatalf("overwrite without --force: exit %d %q", code, e)
	}
	if _, e, code := runCLI(t, "keygen", "-o", p, "--force"); code != 0 {
		t.Fatalf("--force: %s", e)
	}
	if second, _ := os.ReadFile(p); bytes.Equal(first, second) {
		t.Fatal("--force kept the old key")
	}
}

func TestSSHConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "client.toml")
	os.WriteFile(cfg, []byte("[[host]]\nmatch = \"*.example.net\"\nkey_file = \"k\"\n"), 0o600)
	out, e, code := runCLI(t, "ssh-config", "--config", cfg, "--fdpass", "db.example.net")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	for _, want := range []string{"Host db.example.net\n", " fdpass --config " + cfg + " --alias %n %h %p\n", "    ProxyUseFdpass yes\n", "    ConnectionAttempts 1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stanza lacks %q:\n%s", want, out)
		}
	}
	if _, e, code := runCLI(t, "ssh-config", "--config", cfg, "other.org"); code != 2 || !strings.Contains(e, "no [[host]] in "+cfg+" matches other.org") {
		t.Errorf("unmatched host: exit %d %q", code, e)
	}
	kf := writeKey(t, make([]byte, 32))
	out, _, code = runCLI(t, "ssh-config", "--config", cfg, "--key-file", kf, "other.org")
	if code != 0 || !strings.Contains(out, "proxy --config "+cfg+" --key-file "+kf+" --alias %n %h %p") || strings.Contains(out, "Fdpass") {
		t.Errorf("with --key-file: exit %d:\n%s", code, out)
	}
}

// TestKeygenStanzas: keygen --stanzas writes the key and prints a server
// [[user]] and a client [[host]] stanza that both configs accept as they
// are, and no key material; with --replaces, the rotation's stanzas.
func TestKeygenStanzas(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "alice-2027.key")
	out, e, code := runCLI(t, "keygen", "-o", keyPath, "--stanzas", "--realm", "lab \"1\"", "alice", "server1.example.net")
	if code != 0 {
		t.Fatalf("keygen --stanzas: %d %s", code, e)
	}
	key, err := keyfile.Load(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, strings.TrimSpace(string(keyfile.Encode(key)))) {
		t.Fatalf("stanzas print the key:\n%s", out)
	}
	serverPart, clientPart, ok := strings.Cut(out, "# Client")
	if !ok {
		t.Fatalf("no client stanza:\n%s", out)
	}
	sc, err := server.ParseConfig(filepath.Join(dir, "seqknockd.toml"), []byte("[[service]]\nport = 22\n"+serverPart), keyfile.Load)
	if err != nil {
		t.Fatalf("server stanza: %v\n%s", err, serverPart)
	}
	if u := sc.Users[0]; u.Name != "alice" || u.Keys[0].File != keyPath || string(u.Keys[0].Key) != string(key) {
		t.Errorf("server user: %v", u)
	}
	cc, err := client.ParseConfig("/home/a/.config/seqknock/client.toml", []byte("# Client"+clientPart), "/home/a")
	if err != nil {
		t.Fatalf("client stanza: %v\n%s", err, clientPart)
	}
	if h := cc.Lookup("server1.example.net", 22); h == nil || h.KeyFile != "/home/a/.config/seqknock/alice-2027.key" || h.Realm != "lab \"1\"" || len(h.Fallback) != 0 || h.BindSourcePort {
		t.Errorf("client host: %+v", h)
	}

	// A rotation: the old key stays valid until --not-after.
	oldPath := filepath.Join(dir, "alice-2026.key")
	runCLI(t, "keygen", "-o", oldPath)
	newPath := filepath.Join(dir, "alice-2028.key")
	out, e, code = runCLI(t, "keygen", "-o", newPath, "--stanzas", "--replaces", oldPath, "--not-after", "2027-01-15T00:00:00+01:00", "--port", "2222", "--bind-source-port", "alice", "*.example.net")
	if code != 0 {
		t.Fatalf("keygen --replaces: %d %s", code, e)
	}
	serverPart, clientPart, _ = strings.Cut(out, "# Client")
	sc, err = server.ParseConfig(filepath.Join(dir, "seqknockd.toml"), []byte("[[service]]\nport = 22\n"+serverPart), keyfile.Load)
	if err != nil {
		t.Fatalf("server stanza: %v\n%s", err, serverPart)
	}
	if k := sc.Users[0].Keys; len(k) != 2 || k[0].File != newPath || !k[0].NotAfter.IsZero() || k[1].File != oldPath ||
		!k[1].NotAfter.Equal(time.Date(2027, 1, 14, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("server keys: %v", k)
	}
	cc, err = client.ParseConfig("/home/a/.config/seqknock/client.toml", []byte("# Client"+clientPart), "/home/a")
	if err != nil {
		t.Fatalf("client stanza: %v\n%s", err, clientPart)
	}
	if h := cc.Lookup("a.example.net", 2222); h == nil || h.KeyFile != "/home/a/.config/seqknock/alice-2028.key" ||
		len(h.Fallback) != 1 || h.Fallback[0] != "/home/a/.config/seqknock/alice-2026.key" || !h.BindSourcePort {
		t.Errorf("client host: %+v", h)
	}

	// A second device's key: a key_files list the server merges into the
	// user's [[user]], and the device's [[host]]; both name the fingerprint.
	laptop := filepath.Join(dir, "alice-laptop.key")
	out, e, code = runCLI(t, "keygen", "-o", laptop, "--stanzas", "--device", "laptop", "alice", "server1.example.net")
	if code != 0 {
		t.Fatalf("keygen --device: %d %s", code, e)
	}
	lkey, err := keyfile.Load(laptop)
	if err != nil {
		t.Fatal(err)
	}
	serverPart, clientPart, _ = strings.Cut(out, "# Client")
	if strings.Count(out, totp.Fingerprint(lkey)) != 2 || !strings.Contains(serverPart, "alice's device laptop") {
		t.Errorf("device stanzas without the device or the fingerprint:\n%s", out)
	}
	merged := strings.Replace(serverPart, "# alice's other keys stay listed here, one per device\n", tomlString(keyPath)+",\n", 1)
	sc, err = server.ParseConfig(filepath.Join(dir, "seqknockd.toml"), []byte("[[service]]\nport = 22\n[[user]]\nname = \"alice\"\n"+merged), keyfile.Load)
	if err != nil {
		t.Fatalf("server line merged into alice's [[user]]: %v\n%s", err, merged)
	}
	if k := sc.Users[0].Keys; len(k) != 2 || k[0].File != keyPath || k[1].File != laptop {
		t.Errorf("alice's keys after the merge: %v", k)
	}
	cc, err = client.ParseConfig("/home/a/.config/seqknock/client.toml", []byte("# Client"+clientPart), "/home/a")
	if err != nil {
		t.Fatalf("client stanza: %v\n%s", err, clientPart)
	}
	if h := cc.Lookup("server1.example.net", 22); h == nil || h.KeyFile != "/home/a/.config/seqknock/alice-laptop.key" {
		t.Errorf("device's client host: %+v", h)
	}

	for _, args := range [][]string{
		{"keygen", "-o", filepath.Join(dir, "x5"), "--stanzas", "--device", "laptop", "--replaces", oldPath, "--not-after", "2027-01-15T00:00:00Z", "a", "h"},
		{"keygen", "-o", filepath.Join(dir, "x6"), "--stanzas", "--device", "lap top", "a", "h"},
		{"keygen", "-o", filepath.Join(dir, "x7"), "--device", "laptop"},
		{"keygen", "--stanzas", "alice", "h"},                                                    // no -o: the key would go to stdout with them
		{"keygen", "-o", filepath.Join(dir, "x1"), "--stanzas", "alice"},                         // one argument
		{"keygen", "-o", filepath.Join(dir, "x2"), "--stanzas", "bad name", "h"},                 // not a user name
		{"keygen", "-o", filepath.Join(dir, "x3"), "--stanzas", "--replaces", oldPath, "a", "h"}, // no --not-after
		{"keygen", "-o", filepath.Join(dir, "x4"), "--port", "22"},                               // --port without --stanzas
	} {
		if _, e, code := runCLI(t, args...); code != 2 || strings.Count(e, "\n") != 1 {
			t.Errorf("%v: exit %d, %q; want 2 and one line", args, code, e)
		}
	}
	for _, f := range []string{"x1", "x2", "x3", "x4", "x5", "x6", "x7"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("a refused keygen wrote %s", f)
		}
	}
}

// TestMissingConfigSaysSo: with no client config file, proxy, ssh-config
// and fingerprint say that the file does not exist, naming it, not that
// no [[host]] in it matches.
func TestMissingConfigSaysSo(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", xdg)
	if os.Getenv("SUDO_UID") != "" {
		t.Skip("under sudo the invoking user's config is read, not $XDG_CONFIG_HOME's")
	}
	want := filepath.Join(xdg, "seqknock", "client.toml") + " does not exist"
	for _, args := range [][]string{{"proxy", "db.example.net", "22"}, {"ssh-config", "db.example.net"}, {"fingerprint"}} {
		_, e, code := runCLI(t, args...)
		if code != 2 || !strings.Contains(e, want) || strings.Contains(e, "no [[host]]") || strings.Count(e, "\n") != 1 {
			t.Errorf("%v: exit %d %q; want 2 and one line with %q", args, code, e, want)
		}
	}
}

// TestFingerprintCommand: one line per key of each [[host]], the
// preferred key first, with the fingerprint of the vectors; --key-file
// alone; a host no entry matches is an error.
func TestFingerprintCommand(t *testing.T) {
	dir := t.TempDir()
	k1 := writeKey(t, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31})
	k2 := writeKey(t, bytes.Repeat([]byte{0xff}, 16))
	cfg := filepath.Join(dir, "client.toml")
	os.WriteFile(cfg, []byte("[[host]]\nmatch = \"db.example.net\"\nport = 22\nkey_files = [\""+k1+"\", \""+k2+"\"]\n"+
		"[[host]]\nmatch = \"*.example.org\"\nkey_file = \""+k2+"\"\n"), 0o600)
	out, e, code := runCLI(t, "fingerprint", "--config", cfg)
	want := "db.example.net port 22: SHA256:3KFON42KvPreZHPUiXBfxw " + k1 + "\n" +
		"db.example.net port 22: SHA256:U5a27rwqupnF1IfbBX7UJQ " + k2 + " (fallback)\n" +
		"*.example.org any port: SHA256:U5a27rwqupnF1IfbBX7UJQ " + k2 + "\n"
	if code != 0 || out != want {
		t.Errorf("fingerprint: exit %d %q\n%s\nwant\n%s", code, e, out, want)
	}
	if out, _, code := runCLI(t, "fingerprint", "--config", cfg, "www.example.org"); code != 0 || out != "*.example.org any port: SHA256:U5a27rwqupnF1IfbBX7UJQ "+k2+"\n" {
		t.Errorf("fingerprint HOST: exit %d %q", code, out)
	}
	if out, _, code := runCLI(t, "fingerprint", "--key-file", k1); code != 0 || out != "SHA256:3KFON42KvPreZHPUiXBfxw "+k1+"\n" {
		t.Errorf("fingerprint --key-file: exit %d %q", code, out)
	}
	if _, e, code := runCLI(t, "fingerprint", "--config", cfg, "other.net"); code != 2 || !strings.Contains(e, "no [[host]] in "+cfg+" matches other.net") {
		t.Errorf("unmatched host: exit %d %q", code, e)
	}
}

// tomlString is s as a TOML basic string, for paths in tests.
func tomlString(s string) string { return strconv.Quote(s) }

// TestAttemptsChecked: --attempts below 1 or above the slots per period is
// a usage error, said before any key is read or knock sent.
func TestAttemptsChecked(t *testing.T) {
	for _, args := range [][]string{
		{"proxy", "--attempts", "0", "--key-file", "/nonexistent", "db.example.net", "22"},
		{"proxy", "--attempts", "5", "--key-file", "/nonexistent", "db.example.net", "22"},
		{"proxy", "--attempts", "9", "--slots", "8", "--key-file", "/nonexistent", "db.example.net", "22"},
	} {
		if _, e, code := runCLI(t, args...); code != 2 || !strings.Contains(e, "--attempts") || strings.Count(e, "\n") != 1 {
			t.Errorf("%v: exit %d %q; want 2 and one line naming --attempts", args, code, e)
		}
	}
}
