package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/tcpsign"
	"github.com/seqknock/seqknock/totp"
)

// fakeKeys loads keys from a map instead of files: "bad" fails.
func fakeKeys(path string) ([]byte, error) {
	if strings.HasSuffix(path, "bad") {
		return nil, fmt.Errorf("load key: %s: readable by group or others (mode 0644); run: chmod 600 %s", path, path)
	}
	k := make([]byte, 32)
	copy(k, filepath.Base(path))
	return k, nil
}

const goodConfig = `# a comment
period = "2s"
tolerance = 1
realm = "lab"

[[service]]
port = 22

[[service]]
port = 2222
users = ["bob"]

[[user]]
name = "alice"
key_file = "alice.key"

[[user]]
name = "bob"
key_file = "/keys/bob.key"
`

func TestParseConfigGood(t *testing.T) {
	c, err := ParseConfig("/etc/seqknock/seqknockd.toml", []byte(goodConfig), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	if c.Period != 2*time.Second || c.Tolerance != 1 || c.Slots != 4 || c.Realm != "lab" || c.Table != "seqknock" || c.CtMarkBit != 23 {
		t.Errorf("scalars: %+v", c)
	}
	if c.Users[0].Keys[0].File != "/etc/seqknock/alice.key" || c.Users[1].Keys[0].File != "/keys/bob.key" {
		t.Errorf("key files: %v", c.Users)
	}
	if len(c.Services) != 2 || c.Services[1].Users[0] != "bob" {
		t.Errorf("services: %+v", c.Services)
	}
	if s := fmt.Sprintf("%v %+v %#v", c.Users[0], c.Users[0], c.Users); strings.Contains(s, "alice.key\x00") || strings.Contains(s, string(c.Users[0].Keys[0].Key)) {
		t.Errorf("formatting a user shows its key: %s", s)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig("x.toml", []byte("[[service]]\nport = 22\n[[user]]\nname = \"a\"\nkey_file = \"k\"\n"), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	if c.Period != 30*time.Second || c.Tolerance != 1 || c.Lookahead != 0 || c.Slots != 4 || c.Realm != "" || c.Table != "seqknock" || c.MarkBit() != 0x00800000 || c.PacketMark() != 0x01000000 {
		t.Errorf("defaults: %+v", c)
	}
	if c.WindowLength() != 90*time.Second {
		t.Errorf("window %v", c.WindowLength())
	}
	r := rules(c)
	if c.Services[0].Unknocked != UnknockedDrop || r.Guess.String() != "10/second+20" || r.Global.String() != "1000/second+5" || r.Prefix4 != 32 || r.Prefix6 != 64 {
		t.Errorf("mode and limit defaults: %+v, rules %v", c.Services[0], r)
	}
}

func TestParseConfigModesAndLimits(t *testing.T) {
	text := "guess_limit = \"0\"\nguess_global_limit = \"30/minute\"\nguess_prefix6 = 48\n" +
		"[[service]]\nport = 22\n[[service]]\nport = 2222\nunknocked = \"reset\"\n[[service]]\nport = 443\nunknocked = \"drop\"\n" +
		"[[user]]\nname = \"a\"\nkey_file = \"k\"\n"
	c, err := ParseConfig("x.toml", []byte(text), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	r := rules(c)
	// The guess limit off leaves the prefixes out of the rules (they
	// would only make a fingerprint differ).
	if !r.Guess.Off() || r.Prefix6 != 0 || r.Global.String() != "30/minute+5" {
		t.Errorf("rules %v", r)
	}
	s := Desired(c, time.Unix(1_800_000_000, 0))
	if fmt.Sprint(s.Ports) != "[22 2222 443]" || fmt.Sprint(s.ResetPorts) != "[2222]" {
		t.Errorf("ports %v, reset %v", s.Ports, s.ResetPorts)
	}
}

// badConfigs is shared with the kernel test, which checks that each leaves
// the installed table untouched.
var badConfigs = []struct {
	name string
	text string
	want string // the whole "file:line: field: message" tail
}{
	{"unknown top key", "perod = \"30s\"\n" + minimal, "x.toml:1: perod: unknown key"},
	{"unknown user key", minimal + "nmae = \"x\"\n", "x.toml:7: user.nmae: unknown key"},
	{"period short", "period = \"500ms\"\n" + minimal, "x.toml:1: period: 500ms: period must be a whole number of seconds, at least 1s"},
	{"period fraction", "period = \"1.5s\"\n" + minimal, "x.toml:1: period: 1.5s: period must be a whole number"},
	{"period garbage", "period = \"soon\"\n" + minimal, "x.toml:1: period: \"soon\" is not a duration"},
	{"period type", "period = 30\n" + minimal, "x.toml:1: period: incompatible types"},
	{"tolerance negative", "tolerance = -1\n" + minimal, "x.toml:1: tolerance: -1 out of range 0..10"},
	{"slots zero", "slots = 0\n" + minimal, "x.toml:1: slots: 0 out of range 1..256"},
	{"mark bit", "ct_mark_bit = 32\n" + minimal, "x.toml:1: ct_mark_bit: 32 out of range 0..31"},
	{"packet mark bit", "packet_mark_bit = -1\n" + minimal, "x.toml:1: packet_mark_bit: -1 out of range 0..31"},
	{"log group", "log_group = 0\n" + minimal, "x.toml:1: log_group: 0 out of range 1..65534"},
	{"guess limit unit", "guess_limit = \"10/day\"\n" + minimal, `x.toml:1: guess_limit: "10/day": unit "day" is not second, minute or hour`},
	{"guess limit form", "period = \"30s\"\nguess_limit = \"10\"\n" + minimal, `x.toml:2: guess_limit: "10": want N/second, N/minute or N/hour (N at least 1), or "0" for off`},
	{"guess global", "guess_global_limit = \"0/second\"\n" + minimal, `x.toml:1: guess_global_limit: "0/second": want N/second`},
	{"guess burst", "guess_burst = -1\n" + minimal, "x.toml:1: guess_burst: -1 out of range 0..1000000"},
	{"guess prefix6", "guess_prefix6 = 129\n" + minimal, "x.toml:1: guess_prefix6: 129 out of range 1..128"},
	{"guess prefix4", "guess_prefix4 = 0\n" + minimal, "x.toml:1: guess_prefix4: 0 out of range 1..32"},
	{"unknocked mode", "[[service]]\nport = 22\nunknocked = \"rst\"\n[[user]]\nname = \"a\"\nkey_file = \"k\"\n", `x.toml:3: service[0].unknocked: "rst": want "drop" or "reset"`},
	{"bind source port", "[[service]]\nport = 22\nbind_source_port = \"yes\"\n[[user]]\nname = \"a\"\nkey_file = \"k\"\n", `x.toml:3: service.bind_source_port: incompatible types: TOML value has type string; destination has type boolean`},
	{"table name", "table = \"my table\"\n" + minimal, "x.toml:1: table: \"my table\""},
	{"realm long", "realm = \"" + strings.Repeat("r", 256) + "\"\n" + minimal, "x.toml:1: realm: realm is 256 bytes"},
	{"port zero", "[[service]]\nport = 0\n[[user]]\nname = \"a\"\nkey_file = \"k\"\n", "x.toml:2: service[0].port: 0 out of range 1..65535"},
	{"port high", "[[service]]\nport = 70000\n[[user]]\nname = \"a\"\nkey_file = \"k\"\n", "x.toml:2: service[0].port: 70000 out of range"},
	{"port dup", minimal + "[[service]]\nport = 22\n", "x.toml:8: service[1].port: 22 already protected by service[0]"},
	{"port missing", "[[service]]\nusers = []\n[[user]]\nname = \"a\"\nkey_file = \"k\"\n", "x.toml:1: service[0].port: missing"},
	{"user dup", minimal + "[[user]]\nname = \"a\"\nkey_file = \"k2\"\n", "x.toml:8: user[1].name: \"a\" already defined in user[0]"},
	{"user unknown in service", "[[service]]\nport = 22\nusers = [\"zed\"]\n[[user]]\nname = \"a\"\nkey_file = \"k\"\n", "x.toml:3: service[0].users: no [[user]] named \"zed\""},
	{"key file missing", "[[service]]\nport = 22\n[[user]]\nname = \"a\"\n", "x.toml:3: user[0].key_file: missing"},
	{"key file unsafe", "[[service]]\nport = 22\n[[user]]\nname = \"a\"\nkey_file = \"/k/bad\"\n", "x.toml:5: user[0].key_file: load key: /k/bad: readable by group or others (mode 0644); run: chmod 600 /k/bad"},
	{"no users", "[[service]]\nport = 22\n", "x.toml: user: no [[user]]"},
	{"no services", "[[user]]\nname = \"a\"\nkey_file = \"k\"\n", "x.toml: service: no [[service]]"},
	{"syntax", "period = \"30s\n" + minimal, "x.toml:1"},
	{"key_file and key_files", minimal + "key_files = [\"k2\"]\n", "x.toml:7: user[0].key_files: set key_file or key_files, not both"},
	{"key_files empty", minimalUser + "key_files = []\n", "x.toml:6: user[0].key_files: empty"},
	{"key_files not_after local", minimalUser + "key_files = [\"k\", { file = \"k2\", not_after = 2027-01-01T00:00:00 }]\n",
		"x.toml:6: user[0].key_files[1].not_after: 2027-01-01T00:00:00 has no UTC offset"},
	{"key_files not_after date", minimalUser + "key_files = [{ file = \"k2\", not_after = 2027-01-01 }]\n",
		"x.toml:6: user[0].key_files[0].not_after: 2027-01-01T00:00:00 has no UTC offset"},
	{"key_files not_after garbage", minimalUser + "key_files = [{ file = \"k2\", not_after = \"soon\" }]\n",
		"x.toml:6: user[0].key_files[0].not_after: \"soon\": want an RFC 3339 time with offset"},
	{"key_files unknown key", minimalUser + "key_files = [{ file = \"k2\", expires = 1 }]\n", "x.toml:6: user[0].key_files[0].expires: unknown key"},
	{"key_files no file", minimalUser + "key_files = [{ not_after = 2027-01-01T00:00:00Z }]\n", "x.toml:6: user[0].key_files[0].file: missing"},
	{"key_files number", minimalUser + "key_files = [\"k\", 7]\n", "x.toml:6: user[0].key_files[1]: want a path"},
	{"key_files twice", minimalUser + "key_files = [\"k\", \"k\"]\n", "x.toml:6: user[0].key_files[1]: listed twice"},
	{"key_files unsafe", minimalUser + "key_files = [\"k\", \"/k/bad\"]\n", "x.toml:6: user[0].key_files[1]: load key: /k/bad: readable by group or others"},
	{"sign unknown", "[[service]]\nport = 22\nsign = \"md5\"\nsign_key_file = \"s\"\n" + minimalUserKey, "x.toml:3: service[0].sign: \"md5\": want \"tcp-md5\""},
	{"sign tcp-ao", "[[service]]\nport = 22\nsign = \"tcp-ao\"\nsign_key_file = \"s\"\n" + minimalUserKey, "x.toml:3: service[0].sign: "},
	{"sign without key file", "[[service]]\nport = 22\nsign = \"tcp-md5\"\n" + minimalUserKey, "x.toml:3: service[0].sign_key_file: missing: a signed service needs its key file"},
	{"sign key file without sign", "[[service]]\nport = 22\nsign_key_file = \"s\"\n" + minimalUserKey, "x.toml:1: service[0].sign: missing: sign_key_file is set"},
	{"sign key file unsafe", "[[service]]\nport = 22\nsign = \"tcp-md5\"\nsign_key_file = \"/k/bad\"\n" + minimalUserKey,
		"x.toml:4: service[0].sign_key_file: load key: /k/bad: readable by group or others"},
	{"include in wrong place", minimal + "include = [\"d/*.toml\"]\n", "x.toml:7: user.include: unknown key"},
}

// minimalUserKey is a [[user]] with its key.
const minimalUserKey = "[[user]]\nname = \"a\"\nkey_file = \"k\"\n"

// minimalUser is minimal without the user's key.
const minimalUser = "[[service]]\nport = 22\n\n[[user]]\nname = \"a\"\n"

const minimal = "[[service]]\nport = 22\n\n[[user]]\nname = \"a\"\nkey_file = \"k\"\n"

func TestParseConfigBad(t *testing.T) {
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("x.toml", []byte(tc.text), fakeKeys)
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("not a ConfigError: %T", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q\nwant it to contain %q", msg, tc.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
		})
	}
}

// TestParseConfigSign: a signed service carries its key, relative to the
// file; printing the service shows no key; tcp-ao is refused in one line
// that says why (this kernel, or this version, lacks it).
func TestParseConfigSign(t *testing.T) {
	c, err := ParseConfig("/etc/seqknock/seqknockd.toml", []byte("[[service]]\nport = 22\nsign = \"tcp-md5\"\nsign_key_file = \"ssh.sign\"\n"+
		"[[service]]\nport = 2222\n"+minimalUserKey), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Services[0]
	if s.Sign != "tcp-md5" || s.SignKeyFile != "/etc/seqknock/ssh.sign" || len(s.SignKey) != 32 || c.Services[1].Sign != "" || c.Services[1].SignKey != nil {
		t.Fatalf("services: %+v", c.Services)
	}
	if out := fmt.Sprintf("%v %+v %#v", s, s, c.Services); strings.Contains(out, "ssh.sign\x00") || strings.Contains(out, string(s.SignKey)) {
		t.Errorf("formatting a service shows its key: %s", out)
	}
	_, err = ParseConfig("x.toml", []byte("[[service]]\nport = 22\nsign = \"tcp-ao\"\nsign_key_file = \"s\"\n"+minimalUserKey), fakeKeys)
	if err == nil || !strings.Contains(err.Error(), "TCP-AO") && !strings.Contains(err.Error(), "tcp-ao is not implemented") {
		t.Fatalf("tcp-ao: %v", err)
	}
	if tcpsign.AOSupport() != nil && err.Error() != "config x.toml:3: service[0].sign: "+tcpsign.ErrNoTCPAO.Error() {
		t.Errorf("tcp-ao on a kernel without it: %v", err)
	}
}

func TestLoadConfigRealKeyFiles(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "a.key")
	os.WriteFile(kf, []byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"), 0o600)
	cfgPath := filepath.Join(dir, "seqknockd.toml")
	os.WriteFile(cfgPath, []byte(minimal[:len(minimal)-len("key_file = \"k\"\n")]+"key_file = \"a.key\"\n"), 0o600)
	c, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Users[0].Keys[0].Key) != 32 {
		t.Fatalf("key %d bytes", len(c.Users[0].Keys[0].Key))
	}
	os.Chmod(kf, 0o644)
	_, err = LoadConfig(cfgPath)
	if err == nil || !strings.Contains(err.Error(), cfgPath+":6: user[0].key_file: load key: "+kf+": readable by group or others") {
		t.Fatalf("unsafe key: %v", err)
	}
}

func TestDesired(t *testing.T) {
	c, err := ParseConfig("/etc/x.toml", []byte(goodConfig), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_001, 0) // counter 500000 with period 2s
	s := Desired(c, now)
	// port 22: alice and bob; port 2222: bob only; 3 counters x 4 slots.
	if want := (2 + 1) * 3 * 4; len(s.Valid) != want {
		t.Fatalf("%d elements, want %d", len(s.Valid), want)
	}
	if s.Table != "seqknock" || s.MarkBit != 1<<23 || s.UsedTimeout != 6*time.Second {
		t.Errorf("state: table %s mark %#x used %v", s.Table, s.MarkBit, s.UsedTimeout)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	// Each element is the ISN-v1 value for its user, and expires when its
	// counter leaves the window.
	bob, _ := totp.NewDeriver(c.Users[1].Keys[0].Key, "lab")
	alice, _ := totp.NewDeriver(c.Users[0].Keys[0].Key, "lab")
	find := func(port uint16, isn uint32) *nftgen.Element {
		for i := range s.Valid {
			if s.Valid[i].Port == port && s.Valid[i].ISN == isn {
				return &s.Valid[i]
			}
		}
		return nil
	}
	for _, tc := range []struct {
		d       *totp.Deriver
		port    uint16
		counter uint64
		expires int64
		present bool
	}{
		{alice, 22, 500000, 1_000_004, true},
		{alice, 22, 499999, 1_000_002, true},
		{alice, 22, 500001, 1_000_006, true},
		{alice, 22, 500002, 0, false},
		{alice, 22, 499998, 0, false},
		{alice, 2222, 500000, 0, false},
		{bob, 2222, 500000, 1_000_004, true},
	} {
		for slot := uint8(0); slot < 4; slot++ {
			e := find(tc.port, tc.d.ISN(tc.port, tc.counter, slot))
			if (e != nil) != tc.present {
				t.Errorf("port %d counter %d slot %d: present %v, want %v", tc.port, tc.counter, slot, e != nil, tc.present)
				continue
			}
			if e != nil && e.Expires.Unix() != tc.expires {
				t.Errorf("port %d counter %d: expires %d, want %d", tc.port, tc.counter, e.Expires.Unix(), tc.expires)
			}
		}
	}
	// Pure: the same input, the same output.
	if s2 := Desired(c, now); fmt.Sprint(s2.Valid) != fmt.Sprint(s.Valid) {
		t.Error("Desired is not deterministic")
	}
}

// TestDesiredBindSourcePort: a service with bind_source_port turns the
// source-port rules on, and its knocks carry the source port ISN-v1
// reserves for them (the others none).
func TestDesiredBindSourcePort(t *testing.T) {
	text := "[[service]]\nport = 22\nbind_source_port = true\n[[service]]\nport = 2222\nbind_source_port = false\n" +
		"[[user]]\nname = \"a\"\nkey_file = \"k\"\n"
	c, err := ParseConfig("x.toml", []byte(text), fakeKeys)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Services[0].BindSourcePort || c.Services[1].BindSourcePort || !rules(c).SourcePort {
		t.Fatalf("services %+v, rules %v", c.Services, rules(c))
	}
	now := time.Unix(1_800_000_000, 0)
	n := 0
	EachKnock(c, now, func(k Knock) {
		d, _ := totp.NewDeriver(c.Users[0].Keys[k.Key].Key, c.Realm)
		want := uint16(0)
		if k.Port == 22 {
			want = d.SourcePort(k.Port, k.Counter, k.Slot)
			n++
		}
		if k.SPort != want || k.ISN != d.ISN(k.Port, k.Counter, k.Slot) {
			t.Errorf("knock %+v: source port want %d", k, want)
		}
	})
	if n != 12 {
		t.Errorf("%d bound knocks, want 12", n)
	}
	for _, e := range Desired(c, now).Valid {
		if (e.SPort != 0) != (e.Port == 22) {
			t.Errorf("element %+v", e)
		}
	}
	plain, _ := ParseConfig("x.toml", []byte(strings.Replace(text, "bind_source_port = true", "", 1)), fakeKeys)
	if rules(plain).SourcePort {
		t.Error("no bound service, yet source-port rules")
	}
}
