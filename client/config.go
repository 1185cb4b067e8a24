package client

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/seqknock/seqknock/internal/tomlerr"
	"github.com/seqknock/seqknock/tcpsign"
	"github.com/seqknock/seqknock/totp"
)

// Config is the client config, ~/.config/seqknock/client.toml.
type Config struct {
	Path string
	// Missing is set when Path does not exist (LoadConfig's missingOK):
	// the config is then empty, and messages say the file is missing
	// rather than that no [[host]] matches.
	Missing bool
	// Broker is the broker's socket (broker = "PATH"); "" for the default.
	Broker string
	// SocksUser and SocksPasswordFile (socks_user, socks_password_file)
	// let a peer that is not the user into `seqknock socks` with a
	// SOCKS5 username and password; both or neither are set.
	SocksUser         string
	SocksPasswordFile string
	Hosts             []HostEntry
}

// HostEntry says how to knock on the hosts its pattern matches.
type HostEntry struct {
	// Match is a shell pattern (path.Match) for the host name as given.
	Match   string
	Port    uint16 // 0: any port
	KeyFile string
	// Fallback are keys to try, in order, when KeyFile's knock gets no
	// answer: the old keys during a key rotation (key_files).
	Fallback []string
	Realm    string
	Period   time.Duration
	Slots    int
	// Sign is "tcp-md5" when the connection is signed with the key in
	// SignKeyFile (the server's service's sign_key_file); "" when not.
	Sign        string
	SignKeyFile string
	// BindSourcePort binds each knock's socket to the source port ISN-v1
	// reserves for it (bind_source_port = true), as the server's service
	// with bind_source_port requires.
	BindSourcePort bool
}

type rawClientConfig struct {
	Broker            *string `toml:"broker"`
	SocksUser         *string `toml:"socks_user"`
	SocksPasswordFile *string `toml:"socks_password_file"`
	Host              []struct {
		Match   *string `toml:"match"`
		Port    *int    `toml:"port"`
		KeyFile *string `toml:"key_file"`
		// KeyFiles: the preferred key, then fallbacks.
		KeyFiles []string `toml:"key_files"`
		Realm    *string  `toml:"realm"`
		Period   *string  `toml:"period"`
		Slots    *int     `toml:"slots"`
		// Sign and SignKeyFile: TCP-MD5 signing, as the server's service.
		Sign        *string `toml:"sign"`
		SignKeyFile *string `toml:"sign_key_file"`
		// BindSourcePort: 48-bit knocks, as the server's service.
		BindSourcePort *bool `toml:"bind_source_port"`
	} `toml:"host"`
}

// LoadConfig reads the client config. A missing file is not an error when
// missingOK: it gives an empty config, since flags alone suffice.
func LoadConfig(file string, home string, missingOK bool) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		if missingOK && errors.Is(err, os.ErrNotExist) {
			return &Config{Path: file, Missing: true}, nil
		}
		return nil, &tomlerr.Error{File: file, Err: err}
	}
	return ParseConfig(file, data, home)
}

// ParseConfig checks client config text. Errors name the file, the line of
// the [[host]] entry and the field.
func ParseConfig(file string, data []byte, home string) (*Config, error) {
	doc := tomlerr.New(file, data)
	var raw rawClientConfig
	if err := doc.Decode(&raw); err != nil {
		return nil, err
	}
	c := &Config{Path: file}
	if raw.Broker != nil {
		b := expandHome(*raw.Broker, home, "")
		if !filepath.IsAbs(b) {
			return nil, doc.At("", -1, "broker", "broker", fmt.Errorf("%q: want an absolute path", *raw.Broker))
		}
		c.Broker = b
	}
	switch {
	case raw.SocksUser == nil && raw.SocksPasswordFile == nil:
	case raw.SocksUser == nil:
		return nil, doc.At("", -1, "socks_password_file", "socks_user", errors.New("missing or empty: socks_password_file is set"))
	case *raw.SocksUser == "":
		return nil, doc.At("", -1, "socks_user", "socks_user", errors.New("missing or empty: socks_password_file is set"))
	case len(*raw.SocksUser) > 255:
		return nil, doc.At("", -1, "socks_user", "socks_user", errors.New("longer than 255 bytes (RFC 1929)"))
	case raw.SocksPasswordFile == nil:
		return nil, doc.At("", -1, "socks_user", "socks_password_file", errors.New("missing or empty: socks_user is set"))
	case *raw.SocksPasswordFile == "":
		return nil, doc.At("", -1, "socks_password_file", "socks_password_file", errors.New("missing or empty: socks_user is set"))
	default:
		c.SocksUser = *raw.SocksUser
		c.SocksPasswordFile = expandHome(*raw.SocksPasswordFile, home, file)
	}
	for i, h := range raw.Host {
		// Errors name the line of the entry's [[host]] header.
		fail := func(field string, format string, args ...any) error {
			return doc.At("host", i, "", fmt.Sprintf("host[%d].%s", i, field), fmt.Errorf(format, args...))
		}
		e := newHostEntry()
		if h.Match == nil || *h.Match == "" {
			return nil, fail("match", "missing")
		}
		if _, err := path.Match(*h.Match, ""); err != nil {
			return nil, fail("match", "%q: %v", *h.Match, err)
		}
		e.Match = *h.Match
		if h.Port != nil {
			if *h.Port < 1 || *h.Port > 65535 {
				return nil, fail("port", "%d out of range 1..65535", *h.Port)
			}
			e.Port = uint16(*h.Port)
		}
		keyFiles := h.KeyFiles
		switch {
		case h.KeyFile != nil && h.KeyFiles != nil:
			return nil, fail("key_files", "set key_file or key_files, not both")
		case h.KeyFile != nil:
			keyFiles = []string{*h.KeyFile}
		case h.KeyFiles == nil:
			return nil, fail("key_file", "missing")
		case len(h.KeyFiles) == 0:
			return nil, fail("key_files", "empty: list the new key first, then the old one")
		}
		seen := map[string]bool{}
		for j, kf := range keyFiles {
			if kf == "" {
				if h.KeyFile != nil {
					return nil, fail("key_file", "missing")
				}
				return nil, fail(fmt.Sprintf("key_files[%d]", j), "empty")
			}
			kf = expandHome(kf, home, file)
			if seen[kf] {
				return nil, fail(fmt.Sprintf("key_files[%d]", j), "listed twice: %s", kf)
			}
			seen[kf] = true
			if j == 0 {
				e.KeyFile = kf
			} else {
				e.Fallback = append(e.Fallback, kf)
			}
		}
		if h.Realm != nil {
			if err := totp.ValidateRealm(*h.Realm); err != nil {
				return nil, fail("realm", "%v", err)
			}
			e.Realm = *h.Realm
		}
		if h.Period != nil {
			d, err := time.ParseDuration(*h.Period)
			if err == nil {
				err = totp.ValidatePeriod(d)
			}
			if err != nil {
				return nil, fail("period", "%q: %v", *h.Period, err)
			}
			e.Period = d
		}
		if h.Slots != nil {
			if err := ValidateSlots(*h.Slots); err != nil {
				return nil, fail("slots", "%v", err)
			}
			e.Slots = *h.Slots
		}
		switch {
		case h.Sign == nil && h.SignKeyFile != nil:
			return nil, fail("sign", "missing: sign_key_file is set, so set sign = \"tcp-md5\" too")
		case h.Sign != nil:
			if err := tcpsign.CheckMode(*h.Sign); err != nil {
				return nil, fail("sign", "%v", err)
			}
			if h.SignKeyFile == nil || *h.SignKeyFile == "" {
				return nil, fail("sign_key_file", "missing: a signed host needs the service's key file")
			}
			e.Sign, e.SignKeyFile = *h.Sign, expandHome(*h.SignKeyFile, home, file)
		}
		e.BindSourcePort = h.BindSourcePort != nil && *h.BindSourcePort
		c.Hosts = append(c.Hosts, e)
	}
	return c, nil
}

// Lookup returns the first entry matching host and port, or nil.
func (c *Config) Lookup(host string, port uint16) *HostEntry {
	for i := range c.Hosts {
		if e := &c.Hosts[i]; (e.Port == 0 || e.Port == port) && e.matches(host) {
			return e
		}
	}
	return nil
}

// NoHost is the error for a host that no [[host]] matches (what names
// it: "db.example.net port 22"): it says the file does not exist when it
// does not, since then no entry could match.
func (c *Config) NoHost(what, remedy string) error {
	if c.Missing {
		return usagef("no client config: %s does not exist, so nothing matches %s; write it (see seqknock(1), CLIENT CONFIG), or %s", c.Path, what, remedy)
	}
	return usagef("no [[host]] in %s matches %s; add one, or %s", c.Path, what, remedy)
}

func (e *HostEntry) matches(host string) bool {
	ok, _ := path.Match(e.Match, host)
	return ok
}

// expandHome is p with a leading ~ made home and, when config is not "",
// a relative path made relative to the config file's directory.
func expandHome(p, home, config string) string {
	if p == "~" {
		p = home
	} else if rest, ok := strings.CutPrefix(p, "~/"); ok {
		p = filepath.Join(home, rest)
	}
	if config != "" && !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(config), p)
	}
	return p
}
