package server

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/seqknock/seqknock/internal/tomlerr"
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
	MaxTolerance     = 10
	MaxLookahead     = 10
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
	Services  []Service
	Users     []User
}

// Service is one protected port and the users that may knock on it.
type Service struct {
	Port  uint16
	Users []string // empty: all users
}

// User is one key holder.
type User struct {
	Name    string
	KeyFile string
	Key     []byte
}

// String never shows the key.
func (u User) String() string { return fmt.Sprintf("user %s (%s)", u.Name, u.KeyFile) }

// GoString never shows the key.
func (u User) GoString() string { return u.String() }

type rawConfig struct {
	Period    *string      `toml:"period"`
	Tolerance *int         `toml:"tolerance"`
	Lookahead *int         `toml:"lookahead"`
	Slots     *int         `toml:"slots"`
	Realm     *string      `toml:"realm"`
	Table     *string      `toml:"table"`
	CtMarkBit *int         `toml:"ct_mark_bit"`
	Service   []rawService `toml:"service"`
	User      []rawUser    `toml:"user"`
}

type rawService struct {
	Port  *int     `toml:"port"`
	Users []string `toml:"users"`
}

type rawUser struct {
	Name    *string `toml:"name"`
	KeyFile *string `toml:"key_file"`
}

// ConfigError is a config mistake: the file, the line (0 when unknown) and
// the field it is in.
type ConfigError = tomlerr.Error

var tableName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)
var userName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$`)

// LoadConfig reads and checks the config at path and loads every key. Any
// mistake gives one *ConfigError naming the file, line and field.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Err: err}
	}
	return ParseConfig(path, data, keyfile.Load)
}

// LoadConfigWithoutKeys is LoadConfig without reading the key files: every
// check but the keys' own. It is for what needs the shape of the config and
// not its secrets (`seqknockd ruleset`, which then needs no root). Each key
// file stands for a placeholder key made from its path, so users with their
// own files have distinct knocks as they would with the real keys, and the
// knock values mean nothing.
func LoadConfigWithoutKeys(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Err: err}
	}
	placeholder := func(keyFile string) ([]byte, error) {
		sum := sha256.Sum256([]byte("seqknock/placeholder-key\x00" + keyFile))
		return sum[:], nil
	}
	return ParseConfig(path, data, placeholder)
}

// ParseConfig checks config text; path names it in errors and anchors
// relative key_file paths. loadKey loads one key file.
func ParseConfig(path string, data []byte, loadKey func(string) ([]byte, error)) (*Config, error) {
	doc := tomlerr.New(path, data)
	fail := func(section string, idx int, key string, field string, err error) error {
		return doc.At(section, idx, key, field, err)
	}
	var raw rawConfig
	if err := doc.Decode(&raw); err != nil {
		return nil, err
	}

	c := &Config{
		Path:      path,
		Period:    totp.DefaultPeriod,
		Tolerance: DefaultTolerance,
		Slots:     totp.DefaultSlots,
		Table:     DefaultTable,
		CtMarkBit: DefaultCtMarkBit,
	}
	if raw.Period != nil {
		d, err := time.ParseDuration(*raw.Period)
		if err != nil {
			return nil, fail("", 0, "period", "period", fmt.Errorf("%q is not a duration like \"30s\"", *raw.Period))
		}
		if err := totp.ValidatePeriod(d); err != nil {
			return nil, fail("", 0, "period", "period", fmt.Errorf("%s: %w", *raw.Period, err))
		}
		c.Period = d
	}
	intKey := func(p *int, name string, lo, hi int, dst *int) error {
		if p == nil {
			return nil
		}
		if *p < lo || *p > hi {
			return fail("", 0, name, name, fmt.Errorf("%d out of range %d..%d", *p, lo, hi))
		}
		*dst = *p
		return nil
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
	} {
		if err := intKey(k.p, k.name, k.lo, k.hi, k.dst); err != nil {
			return nil, err
		}
	}
	if raw.Realm != nil {
		if !utf8.ValidString(*raw.Realm) {
			return nil, fail("", 0, "realm", "realm", errors.New("not valid UTF-8"))
		}
		if err := totp.ValidateRealm(*raw.Realm); err != nil {
			return nil, fail("", 0, "realm", "realm", err)
		}
		c.Realm = *raw.Realm
	}
	if raw.Table != nil {
		if !tableName.MatchString(*raw.Table) {
			return nil, fail("", 0, "table", "table", fmt.Errorf("%q: want a letter, then up to 63 letters, digits, _ or -", *raw.Table))
		}
		c.Table = *raw.Table
	}

	if len(raw.User) == 0 {
		return nil, &ConfigError{File: path, Field: "user", Err: errors.New("no [[user]]: nobody could knock")}
	}
	names := map[string]int{}
	for i, ru := range raw.User {
		field := fmt.Sprintf("user[%d]", i)
		if ru.Name == nil || *ru.Name == "" {
			return nil, fail("user", i, "", field+".name", errors.New("missing"))
		}
		if !userName.MatchString(*ru.Name) {
			return nil, fail("user", i, "name", field+".name", fmt.Errorf("%q: want letters, digits, _ . @ -", *ru.Name))
		}
		if j, dup := names[*ru.Name]; dup {
			return nil, fail("user", i, "name", field+".name", fmt.Errorf("%q already defined in user[%d]", *ru.Name, j))
		}
		names[*ru.Name] = i
		if ru.KeyFile == nil || *ru.KeyFile == "" {
			return nil, fail("user", i, "", field+".key_file", errors.New("missing"))
		}
		kf := *ru.KeyFile
		if !filepath.IsAbs(kf) {
			kf = filepath.Join(filepath.Dir(path), kf)
		}
		key, err := loadKey(kf)
		if err != nil {
			return nil, fail("user", i, "key_file", field+".key_file", err)
		}
		c.Users = append(c.Users, User{Name: *ru.Name, KeyFile: kf, Key: key})
	}

	if len(raw.Service) == 0 {
		return nil, &ConfigError{File: path, Field: "service", Err: errors.New("no [[service]]: nothing to protect")}
	}
	ports := map[int]int{}
	for i, rs := range raw.Service {
		field := fmt.Sprintf("service[%d]", i)
		if rs.Port == nil {
			return nil, fail("service", i, "", field+".port", errors.New("missing"))
		}
		p := *rs.Port
		if p < 1 || p > 65535 {
			return nil, fail("service", i, "port", field+".port", fmt.Errorf("%d out of range 1..65535", p))
		}
		if j, dup := ports[p]; dup {
			return nil, fail("service", i, "port", field+".port", fmt.Errorf("%d already protected by service[%d]", p, j))
		}
		ports[p] = i
		seen := map[string]bool{}
		for _, u := range rs.Users {
			if _, ok := names[u]; !ok {
				return nil, fail("service", i, "users", field+".users", fmt.Errorf("no [[user]] named %q", u))
			}
			if seen[u] {
				return nil, fail("service", i, "users", field+".users", fmt.Errorf("%q listed twice", u))
			}
			seen[u] = true
		}
		c.Services = append(c.Services, Service{Port: uint16(p), Users: rs.Users})
	}
	return c, nil
}

// MarkBit returns the ct mark bit as a mask.
func (c *Config) MarkBit() uint32 { return 1 << uint(c.CtMarkBit) }

// WindowLength is how long one knock stays valid: 2*tolerance+1+lookahead
// periods. The used set keeps spent knocks this long.
func (c *Config) WindowLength() time.Duration {
	return time.Duration(2*c.Tolerance+1+c.Lookahead) * c.Period
}
