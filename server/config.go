package server

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/seqknock/seqknock/internal/strictfile"
	"github.com/seqknock/seqknock/internal/tomlerr"
	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/tcpsign"
	"github.com/seqknock/seqknock/totp"
	"github.com/seqknock/seqknock/totp/keyfile"
)

// DefaultConfigPath is where seqknockd looks for its config.
const DefaultConfigPath = "/etc/seqknock/seqknockd.toml"

// Defaults of the config keys.
const (
	DefaultTable     = "seqknock"
	DefaultTolerance = 1
	DefaultCtMarkBit = 23
	// DefaultPacketMarkBit is the packet (skb) mark bit of an admitted
	// SYN: 0x01000000, outside the bits others commonly use (tailscale
	// 0xff0000, kube-proxy and flannel 0x4000/0x8000, cilium 0x0f00,
	// wg-quick's whole-value 0xca6c, the AWS VPC CNI's 0x80, istio's 0x539).
	DefaultPacketMarkBit = 24
	DefaultLogGroup      = 23
	MaxTolerance         = 10
	MaxLookahead         = 10
	// The guess limit: per source (an IPv4 /32, an IPv6 /64), unknocked
	// SYNs a second and the burst nft allows on top; and the global cap on
	// unknocked SYNs from all sources together.
	DefaultGuessLimit       = "10/second"
	DefaultGuessBurst       = 20
	DefaultGuessPrefix4     = 32
	DefaultGuessPrefix6     = 64
	DefaultGuessGlobalLimit = "1000/second"
	// DefaultLockoutLookupLimit is the knock lookups a second that all
	// locked-out sources share (its burst is as many).
	DefaultLockoutLookupLimit = "2000/second"
)

// The closed-port modes of a service: what an unknocked packet to its port
// gets.
const (
	UnknockedDrop  = "drop"  // nothing: the port looks filtered
	UnknockedReset = "reset" // what a port without a listener sends
)

// Config is a loaded, checked seqknockd config with its keys.
type Config struct {
	Path      string
	Period    time.Duration
	Tolerance int
	Lookahead int
	Slots     int
	Realm     string
	Table     string
	CtMarkBit int
	// PacketMarkBit is the packet mark bit the admit rules set and the
	// listeners' socket filters require on a SYN.
	PacketMarkBit int
	LogGroup      int
	// Guess is the per-source limit on unknocked SYNs (Rate 0: off), keyed
	// on GuessPrefix4/6; GuessGlobal the cap on all sources together.
	Guess        nftgen.Limit
	GuessPrefix4 int
	GuessPrefix6 int
	GuessGlobal  nftgen.Limit
	// LockoutLookup is the budget of knock lookups all locked-out sources
	// share, burst as large as the rate (Rate 0: none).
	LockoutLookup nftgen.Limit
	// NearMissPeriods is how many periods either side of now the near-miss
	// diagnosis of dropped SYNs covers (0: off).
	NearMissPeriods int
	Services        []Service
	Users           []User
	// Files are the drop-in files read through include, in order.
	Files []string
}

// Service is one protected port and the users that may knock on it.
type Service struct {
	Port  uint16
	Users []string // empty: all users
	// Unknocked is UnknockedDrop or UnknockedReset.
	Unknocked string
	// BindSourcePort makes the service's knocks 48-bit: a SYN must also
	// come from the source port ISN-v1 reserves for its knock
	// (bind_source_port = true; the clients set it too).
	BindSourcePort bool
	// Sign is "tcp-md5" when seqknockd puts SignKey, from SignKeyFile, on
	// the service's listening sockets for every peer (package tcpsign);
	// "" when connections are not signed.
	Sign        string
	SignKeyFile string
	SignKey     tcpsign.Key
}

// User is one key holder, with one key or, during a key rotation, several:
// knocks made with any of its unexpired keys are valid.
type User struct {
	Name string
	Keys []UserKey
}

// UserKey is one of a user's keys.
type UserKey struct {
	File string
	Key  []byte
	// NotAfter is when the key stops working; zero: never.
	NotAfter time.Time
}

// ValidAt reports whether the key makes valid knocks at now.
func (k UserKey) ValidAt(now time.Time) bool { return k.NotAfter.IsZero() || now.Before(k.NotAfter) }

// String never shows the key.
func (k UserKey) String() string {
	if k.NotAfter.IsZero() {
		return k.File
	}
	return k.File + " until " + k.NotAfter.UTC().Format(time.RFC3339)
}

// GoString never shows the key.
func (k UserKey) GoString() string { return k.String() }

// String never shows the key.
func (u User) String() string {
	files := make([]string, len(u.Keys))
	for i, k := range u.Keys {
		files[i] = k.String()
	}
	return fmt.Sprintf("user %s (%s)", u.Name, strings.Join(files, ", "))
}

// GoString never shows the key.
func (u User) GoString() string { return u.String() }

type rawConfig struct {
	Include       []string `toml:"include"`
	Period        *string  `toml:"period"`
	Tolerance     *int     `toml:"tolerance"`
	Lookahead     *int     `toml:"lookahead"`
	Slots         *int     `toml:"slots"`
	Realm         *string  `toml:"realm"`
	Table         *string  `toml:"table"`
	CtMarkBit     *int     `toml:"ct_mark_bit"`
	PacketMarkBit *int     `toml:"packet_mark_bit"`
	LogGroup      *int     `toml:"log_group"`
	// The guess limit.
	GuessLimit       *string      `toml:"guess_limit"`
	GuessBurst       *int         `toml:"guess_burst"`
	GuessPrefix4     *int         `toml:"guess_prefix4"`
	GuessPrefix6     *int         `toml:"guess_prefix6"`
	GuessGlobalLimit *string      `toml:"guess_global_limit"`
	LockoutLookup    *string      `toml:"lockout_lookup_limit"`
	NearMissPeriods  *int         `toml:"near_miss_periods"`
	Service          []rawService `toml:"service"`
	User             []rawUser    `toml:"user"`
}

type rawService struct {
	Port        *int     `toml:"port"`
	Users       []string `toml:"users"`
	Unknocked   *string  `toml:"unknocked"`
	BindSport   *bool    `toml:"bind_source_port"`
	Sign        *string  `toml:"sign"`
	SignKeyFile *string  `toml:"sign_key_file"`
}

type rawUser struct {
	Name     *string     `toml:"name"`
	KeyFile  *string     `toml:"key_file"`
	KeyFiles []rawKeyRef `toml:"key_files"`
}

// rawKeyRef is one key_files entry as written: a string or a table, checked
// by keyRefs. Decoding it this way tells the decoder that the table's keys
// are handled.
type rawKeyRef struct{ v any }

func (r *rawKeyRef) UnmarshalTOML(v any) error { r.v = v; return nil }

// ConfigError is a config mistake: the file, the line (0 when unknown) and
// the field it is in.
type ConfigError = tomlerr.Error

var tableName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)
var userName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$`)

// LoadConfig reads and checks the config at path and loads every key. Any
// mistake gives one *ConfigError naming the file, line and field.
//
// The config and the files it includes are opened without following a
// symlink or blocking, and refused unless they are regular files that
// others cannot write; the key files as loadKeyIn does.
func LoadConfig(path string) (*Config, error) {
	dirs := strictfile.NewDirs(os.Geteuid())
	defer dirs.Close()
	return loadConfig(path, func(key string) ([]byte, error) { return loadKeyIn(dirs, key) })
}

// loadKeyIn loads the key file path as the daemon trusts it: as
// keyfile.Load, after the checks of OpenSSH's StrictModes (see
// strictfile.Dirs.OpenOwned): the file and every directory above it are owned
// by root or the daemon's user, and none is writable by group or others,
// except a sticky directory (/tmp). The file is opened without following
// a symlink or blocking, and read from the descriptor checked; dirs holds
// the directories checked already.
func loadKeyIn(dirs *strictfile.Dirs, path string) ([]byte, error) {
	f, err := dirs.OpenOwned(path)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	defer f.Close()
	return keyfile.LoadFrom(f, path)
}

// maxConfigFile bounds a config or drop-in file read.
const maxConfigFile = 64 << 20

// readConfigFile reads a config or drop-in file: a regular file, opened
// without following a symlink or blocking, that others cannot write.
func readConfigFile(path string) ([]byte, error) {
	f, err := strictfile.OpenNotWritableByOthers(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigFile {
		return nil, fmt.Errorf("larger than %d MiB", maxConfigFile>>20)
	}
	return data, nil
}

// LoadConfigWithoutKeys is LoadConfig without reading the key files: every
// check but the keys' own. It is for what needs the shape of the config and
// not its secrets (`seqknockd ruleset`, which then needs no root). Each key
// file stands for a placeholder key made from its path, so users with their
// own files have distinct knocks as they would with the real keys, and the
// knock values mean nothing.
func LoadConfigWithoutKeys(path string) (*Config, error) {
	return loadConfig(path, func(keyFile string) ([]byte, error) {
		sum := sha256.Sum256([]byte("seqknock/placeholder-key\x00" + keyFile))
		return sum[:], nil
	})
}

// loadConfig is ParseConfig of the config file at path, read by
// readConfigFile.
func loadConfig(path string, loadKey func(string) ([]byte, error)) (*Config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Err: err}
	}
	return ParseConfig(path, data, loadKey)
}

// ParseConfig checks config text; path names it in errors and anchors
// relative key_file paths and include patterns. loadKey loads one key
// file. The drop-in files that include names are read from disk.
func ParseConfig(path string, data []byte, loadKey func(string) ([]byte, error)) (*Config, error) {
	main := tomlerr.New(path, data)
	var raw rawConfig
	if err := main.Decode(&raw); err != nil {
		return nil, err
	}
	fail := func(key string, err error) error { return main.At("", 0, key, key, err) }

	c := &Config{
		Path:      path,
		Period:    totp.DefaultPeriod,
		Tolerance: DefaultTolerance,
		Slots:     totp.DefaultSlots,
		Table:     DefaultTable,
		CtMarkBit: DefaultCtMarkBit,
		LogGroup:  DefaultLogGroup,

		PacketMarkBit: DefaultPacketMarkBit,

		GuessPrefix4: DefaultGuessPrefix4,
		GuessPrefix6: DefaultGuessPrefix6,

		NearMissPeriods: DefaultNearMissPeriods,
	}
	guessBurst := DefaultGuessBurst
	if raw.Period != nil {
		d, err := time.ParseDuration(*raw.Period)
		if err != nil {
			return nil, fail("period", fmt.Errorf("%q is not a duration like \"30s\"", *raw.Period))
		}
		if err := totp.ValidatePeriod(d); err != nil {
			return nil, fail("period", fmt.Errorf("%s: %w", *raw.Period, err))
		}
		c.Period = d
	}
	for _, k := range []struct {
		p      *int
		name   string
		lo, hi int
		dst    *int
	}{
		{raw.Tolerance, "tolerance", 0, MaxTolerance, &c.Tolerance},
		{raw.Lookahead, "lookahead", 0, MaxLookahead, &c.Lookahead},
		{raw.Slots, "slots", 1, totp.MaxSlots, &c.Slots},
		{raw.CtMarkBit, "ct_mark_bit", 0, 31, &c.CtMarkBit},
		{raw.PacketMarkBit, "packet_mark_bit", 0, 31, &c.PacketMarkBit},
		{raw.LogGroup, "log_group", 1, 65534, &c.LogGroup},
		{raw.GuessBurst, "guess_burst", 0, 1_000_000, &guessBurst},
		{raw.GuessPrefix4, "guess_prefix4", 1, 32, &c.GuessPrefix4},
		{raw.GuessPrefix6, "guess_prefix6", 1, 128, &c.GuessPrefix6},
		{raw.NearMissPeriods, "near_miss_periods", 0, MaxNearMissPeriods, &c.NearMissPeriods},
	} {
		if k.p == nil {
			continue
		}
		if *k.p < k.lo || *k.p > k.hi {
			return nil, fail(k.name, fmt.Errorf("%d out of range %d..%d", *k.p, k.lo, k.hi))
		}
		*k.dst = *k.p
	}
	for _, k := range []struct {
		p    *string
		name string
		def  string
		dst  *nftgen.Limit
	}{
		{raw.GuessLimit, "guess_limit", DefaultGuessLimit, &c.Guess},
		{raw.GuessGlobalLimit, "guess_global_limit", DefaultGuessGlobalLimit, &c.GuessGlobal},
		{raw.LockoutLookup, "lockout_lookup_limit", DefaultLockoutLookupLimit, &c.LockoutLookup},
	} {
		v := k.def
		if k.p != nil {
			v = *k.p
		}
		l, err := nftgen.ParseLimit(v)
		if err != nil {
			return nil, fail(k.name, err)
		}
		*k.dst = l
	}
	if !c.Guess.Off() {
		c.Guess.Burst = uint32(guessBurst)
	}
	if !c.GuessGlobal.Off() {
		c.GuessGlobal.Burst = nftgen.GlobalBurst
	}
	// A burst of one second's budget: a client's retransmitted SYN finds
	// tokens again after a quiet moment.
	c.LockoutLookup.Burst = c.LockoutLookup.Rate
	if raw.Realm != nil {
		if !utf8.ValidString(*raw.Realm) {
			return nil, fail("realm", errors.New("not valid UTF-8"))
		}
		if err := totp.ValidateRealm(*raw.Realm); err != nil {
			return nil, fail("realm", err)
		}
		c.Realm = *raw.Realm
	}
	if raw.Table != nil {
		if !tableName.MatchString(*raw.Table) {
			return nil, fail("table", fmt.Errorf("%q: want a letter, then up to 63 letters, digits, _ or -", *raw.Table))
		}
		c.Table = *raw.Table
	}

	parts := []configPart{{doc: main, users: raw.User, services: raw.Service}}
	dropIns, err := readDropIns(main, raw.Include)
	if err != nil {
		return nil, err
	}
	for _, p := range dropIns {
		c.Files = append(c.Files, p.doc.File)
	}
	parts = append(parts, dropIns...)
	if c.Users, err = parseUsers(parts, loadKey); err != nil {
		return nil, err
	}
	if c.Services, err = parseServices(parts, c.Users, loadKey); err != nil {
		return nil, err
	}
	if raw.NearMissPeriods == nil {
		c.NearMissPeriods = defaultNearMissPeriods(c)
	}
	return c, nil
}

// configPart is the [[user]] and [[service]] tables of one file: the main
// config or a drop-in.
type configPart struct {
	doc      *tomlerr.Doc
	users    []rawUser
	services []rawService
}

// origin names where a user or service was defined, for a duplicate's
// error: the key that names it in the idx-th [[section]] of doc. Its line
// is looked up only for that error, so a config without one never splits
// its text into lines.
type origin struct {
	doc *tomlerr.Doc
	idx int
	key string
}

func (o origin) String(section string) string {
	return fmt.Sprintf("%s:%d (%s[%d])", o.doc.File, o.doc.Line(section, o.idx, o.key), section, o.idx)
}

// readDropIns reads the files the include patterns match, each pattern's
// matches in lexical order. Relative patterns are relative to the main
// file's directory. A drop-in holds only [[user]] and [[service]] tables.
func readDropIns(main *tomlerr.Doc, patterns []string) ([]configPart, error) {
	var parts []configPart
	seen := map[string]bool{filepath.Clean(main.File): true}
	for _, pat := range patterns {
		fail := func(err error) error { return main.At("", 0, "include", "include", err) }
		if pat == "" {
			return nil, fail(errors.New("empty pattern"))
		}
		if !filepath.IsAbs(pat) {
			pat = filepath.Join(filepath.Dir(main.File), pat)
		}
		files, err := filepath.Glob(pat)
		if err != nil {
			return nil, fail(fmt.Errorf("%q: %w", pat, err))
		}
		sort.Strings(files)
		for _, f := range files {
			if seen[filepath.Clean(f)] {
				if filepath.Clean(f) == filepath.Clean(main.File) {
					return nil, fail(fmt.Errorf("%q matches the main config %s", pat, main.File))
				}
				continue // matched by an earlier pattern
			}
			seen[filepath.Clean(f)] = true
			data, err := readConfigFile(f)
			if err != nil {
				return nil, &ConfigError{File: f, Err: err}
			}
			d := tomlerr.New(f, data)
			var raw rawConfig
			if err := d.Decode(&raw); err != nil {
				return nil, err
			}
			// Every key but the tables, in rawConfig's order.
			rv := reflect.ValueOf(raw)
			for i := range rv.NumField() {
				name := rv.Type().Field(i).Tag.Get("toml")
				if name != "user" && name != "service" && !rv.Field(i).IsNil() {
					return nil, d.At("", 0, name, name, fmt.Errorf("only [[user]] and [[service]] tables may be in a drop-in; set it in %s", main.File))
				}
			}
			parts = append(parts, configPart{doc: d, users: raw.User, services: raw.Service})
		}
	}
	return parts, nil
}

// parseUsers checks the [[user]] tables of every part and loads their keys.
func parseUsers(parts []configPart, loadKey func(string) ([]byte, error)) ([]User, error) {
	var users []User
	names := map[string]origin{}
	for _, p := range parts {
		for i, ru := range p.users {
			field := fmt.Sprintf("user[%d]", i)
			fail := func(key, sub string, err error) error { return p.doc.At("user", i, key, field+"."+sub, err) }
			if ru.Name == nil || *ru.Name == "" {
				return nil, fail("", "name", errors.New("missing"))
			}
			if !userName.MatchString(*ru.Name) {
				return nil, fail("name", "name", fmt.Errorf("%q: want letters, digits, _ . @ -", *ru.Name))
			}
			if o, dup := names[*ru.Name]; dup {
				if o.doc == p.doc {
					return nil, fail("name", "name", fmt.Errorf("%q already defined in user[%d]", *ru.Name, o.idx))
				}
				return nil, fail("name", "name", fmt.Errorf("%q already defined in %s", *ru.Name, o.String("user")))
			}
			names[*ru.Name] = origin{doc: p.doc, idx: i, key: "name"}
			u := User{Name: *ru.Name}
			refs, key, sub, err := keyRefs(ru)
			if err != nil {
				line := key // none (the header) when the key is missing
				if (key == "key_file" && ru.KeyFile == nil) || (key == "key_files" && ru.KeyFiles == nil) {
					line = ""
				}
				return nil, fail(line, sub, err)
			}
			seen := map[string]bool{}
			for j, ref := range refs {
				kf := ref.File
				if !filepath.IsAbs(kf) {
					kf = filepath.Join(filepath.Dir(p.doc.File), kf)
				}
				if seen[kf] {
					return nil, fail(key, fmt.Sprintf("%s[%d]", key, j), fmt.Errorf("listed twice: %s", kf))
				}
				seen[kf] = true
				k, err := loadKey(kf)
				if err != nil {
					sub := key
					if key == "key_files" {
						sub = fmt.Sprintf("%s[%d]", key, j)
					}
					return nil, fail(key, sub, err)
				}
				u.Keys = append(u.Keys, UserKey{File: kf, Key: k, NotAfter: ref.NotAfter})
			}
			users = append(users, u)
		}
	}
	if len(users) == 0 {
		return nil, &ConfigError{File: parts[0].doc.File, Field: "user", Err: errors.New("no [[user]]: nobody could knock")}
	}
	return users, nil
}

// keyRef is one entry of key_files before its key is loaded.
type keyRef struct {
	File     string
	NotAfter time.Time
}

// keyRefs returns a user's key files from key_file or key_files; on error,
// the key it is in and the field to name. A key_files entry is a path, or
// a table { file = PATH, not_after = TIME } where TIME is an RFC 3339
// date-time with an offset, written bare or quoted.
func keyRefs(ru rawUser) (refs []keyRef, key, field string, err error) {
	switch {
	case ru.KeyFile != nil && ru.KeyFiles != nil:
		return nil, "key_files", "key_files", errors.New("set key_file or key_files, not both")
	case ru.KeyFile != nil:
		if *ru.KeyFile == "" {
			return nil, "key_file", "key_file", errors.New("empty")
		}
		return []keyRef{{File: *ru.KeyFile}}, "key_file", "", nil
	case ru.KeyFiles == nil:
		return nil, "key_file", "key_file", errors.New("missing (set key_file or key_files)")
	case len(ru.KeyFiles) == 0:
		return nil, "key_files", "key_files", errors.New("empty: a user needs at least one key")
	}
	for j, raw := range ru.KeyFiles {
		field := fmt.Sprintf("key_files[%d]", j)
		var ref keyRef
		switch v := raw.v.(type) {
		case string:
			ref.File = v
		case map[string]any:
			for k := range v {
				if k != "file" && k != "not_after" {
					return nil, "key_files", field + "." + k, errors.New("unknown key (want file, not_after)")
				}
			}
			f, ok := v["file"].(string)
			if !ok {
				return nil, "key_files", field + ".file", errors.New("missing, or not a string")
			}
			ref.File = f
			if na, ok := v["not_after"]; ok {
				t, err := notAfter(na)
				if err != nil {
					return nil, "key_files", field + ".not_after", err
				}
				ref.NotAfter = t
			}
		default:
			return nil, "key_files", field, fmt.Errorf("want a path or { file = PATH, not_after = TIME }, not %T", v)
		}
		if ref.File == "" {
			return nil, "key_files", field, errors.New("empty path")
		}
		refs = append(refs, ref)
	}
	return refs, "key_files", "", nil
}

// notAfter reads a not_after value: a TOML offset date-time or a string in
// RFC 3339. A date or a date-time without offset is ambiguous and refused.
func notAfter(v any) (time.Time, error) {
	const want = "want an RFC 3339 time with offset, like 2027-01-01T00:00:00Z"
	switch v := v.(type) {
	case time.Time:
		// The decoder marks dates and times without offset by their zone's
		// name.
		if n := v.Location().String(); strings.HasSuffix(n, "-local") {
			return time.Time{}, fmt.Errorf("%s has no UTC offset: %s", v.Format("2006-01-02T15:04:05"), want)
		}
		return v, nil
	case string:
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: %s", v, want)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%v: %s", v, want)
}

// parseServices checks the [[service]] tables of every part.
func parseServices(parts []configPart, users []User, loadKey func(string) ([]byte, error)) ([]Service, error) {
	names := map[string]bool{}
	for _, u := range users {
		names[u.Name] = true
	}
	var services []Service
	ports := map[int]origin{}
	for _, p := range parts {
		for i, rs := range p.services {
			field := fmt.Sprintf("service[%d]", i)
			fail := func(key, sub string, err error) error { return p.doc.At("service", i, key, field+"."+sub, err) }
			if rs.Port == nil {
				return nil, fail("", "port", errors.New("missing"))
			}
			port := *rs.Port
			if port < 1 || port > 65535 {
				return nil, fail("port", "port", fmt.Errorf("%d out of range 1..65535", port))
			}
			if o, dup := ports[port]; dup {
				if o.doc == p.doc {
					return nil, fail("port", "port", fmt.Errorf("%d already protected by service[%d]", port, o.idx))
				}
				return nil, fail("port", "port", fmt.Errorf("%d already protected in %s", port, o.String("service")))
			}
			ports[port] = origin{doc: p.doc, idx: i, key: "port"}
			seen := map[string]bool{}
			for _, u := range rs.Users {
				if !names[u] {
					return nil, fail("users", "users", fmt.Errorf("no [[user]] named %q", u))
				}
				if seen[u] {
					return nil, fail("users", "users", fmt.Errorf("%q listed twice", u))
				}
				seen[u] = true
			}
			mode := UnknockedDrop
			if rs.Unknocked != nil {
				mode = *rs.Unknocked
				if mode != UnknockedDrop && mode != UnknockedReset {
					return nil, fail("unknocked", "unknocked", fmt.Errorf("%q: want %q or %q", mode, UnknockedDrop, UnknockedReset))
				}
			}
			svc := Service{Port: uint16(port), Users: rs.Users, Unknocked: mode, BindSourcePort: rs.BindSport != nil && *rs.BindSport}
			if key, err := parseSign(&svc, rs, p.doc.File, loadKey); err != nil {
				line := key
				if key == "sign_key_file" && rs.SignKeyFile == nil {
					line = "sign"
				}
				return nil, fail(line, key, err)
			}
			services = append(services, svc)
		}
	}
	if len(services) == 0 {
		return nil, &ConfigError{File: parts[0].doc.File, Field: "service", Err: errors.New("no [[service]]: nothing to protect")}
	}
	return services, nil
}

// parseSign checks a service's sign and sign_key_file and loads the key;
// on error, it names the key at fault.
func parseSign(svc *Service, rs rawService, file string, loadKey func(string) ([]byte, error)) (string, error) {
	switch {
	case rs.Sign == nil && rs.SignKeyFile == nil:
		return "", nil
	case rs.Sign == nil:
		return "sign", errors.New("missing: sign_key_file is set, so set sign = \"tcp-md5\" too")
	}
	if err := tcpsign.CheckMode(*rs.Sign); err != nil {
		return "sign", err
	}
	if rs.SignKeyFile == nil || *rs.SignKeyFile == "" {
		return "sign_key_file", errors.New("missing: a signed service needs its key file")
	}
	kf := *rs.SignKeyFile
	if !filepath.IsAbs(kf) {
		kf = filepath.Join(filepath.Dir(file), kf)
	}
	key, err := loadKey(kf)
	if err != nil {
		return "sign_key_file", err
	}
	if len(key) > tcpsign.MaxKeyLen {
		return "sign_key_file", fmt.Errorf("%s: a key of %d bytes; tcp-md5 takes at most %d", kf, len(key), tcpsign.MaxKeyLen)
	}
	svc.Sign, svc.SignKeyFile, svc.SignKey = *rs.Sign, kf, key
	return "", nil
}

// DropLogGroup is the nflog group the drop rule samples dropped packets
// to: the one after LogGroup.
func (c *Config) DropLogGroup() int { return c.LogGroup + 1 }

// MarkBit returns the ct mark bit as a mask.
func (c *Config) MarkBit() uint32 { return 1 << uint(c.CtMarkBit) }

// PacketMark returns the packet mark bit as a mask.
func (c *Config) PacketMark() uint32 { return 1 << uint(c.PacketMarkBit) }

// WindowLength is how long one knock stays valid: 2*tolerance+1+lookahead
// periods. The used set keeps spent knocks this long.
func (c *Config) WindowLength() time.Duration {
	return time.Duration(2*c.Tolerance+1+c.Lookahead) * c.Period
}
