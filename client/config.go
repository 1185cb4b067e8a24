package client

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/seqknock/seqknock/totp"
)

// Config is the client config, ~/.config/seqknock/client.toml.
type Config struct {
	Path  string
	Hosts []HostEntry
}

// HostEntry says how to knock on the hosts its pattern matches.
type HostEntry struct {
	// Match is a shell pattern (path.Match) for the host name as given.
	Match   string
	Port    uint16 // 0: any port
	KeyFile string
	Realm   string
	Period  time.Duration
	Slots   int
	line    int
}

type rawClientConfig struct {
	Host []struct {
		Match   *string `toml:"match"`
		Port    *int    `toml:"port"`
		KeyFile *string `toml:"key_file"`
		Realm   *string `toml:"realm"`
		Period  *string `toml:"period"`
		Slots   *int    `toml:"slots"`
	} `toml:"host"`
}

var tomlLine = regexp.MustCompile(`line (\d+)`)

// LoadConfig reads the client config. A missing file is not an error when
// missingOK: it gives an empty config, since flags alone suffice.
func LoadConfig(file string, home string, missingOK bool) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		if missingOK && errors.Is(err, os.ErrNotExist) {
			return &Config{Path: file}, nil
		}
		return nil, fmt.Errorf("config %s: %w", file, err)
	}
	return ParseConfig(file, data, home)
}

// ParseConfig checks client config text. Errors name the file, the line of
// the [[host]] entry and the field.
func ParseConfig(file string, data []byte, home string) (*Config, error) {
	var raw rawClientConfig
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		msg := strings.SplitN(err.Error(), "\n", 2)[0]
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("config %s:%d: %s", file, pe.Position.Line, pe.Message)
		}
		if m := tomlLine.FindStringSubmatch(msg); m != nil {
			return nil, fmt.Errorf("config %s:%s: %s", file, m[1], msg)
		}
		return nil, fmt.Errorf("config %s: %s", file, msg)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("config %s:%d: %s: unknown key", file, lineOf(data, und[0][len(und[0])-1]), und[0])
	}
	headers := headerLines(data, "host")
	c := &Config{Path: file}
	for i, h := range raw.Host {
		line := 0
		if i < len(headers) {
			line = headers[i]
		}
		where := func(field string) string { return fmt.Sprintf("config %s:%d: host[%d].%s", file, line, i, field) }
		e := HostEntry{line: line, Period: totp.DefaultPeriod, Slots: totp.DefaultSlots}
		if h.Match == nil || *h.Match == "" {
			return nil, fmt.Errorf("%s: missing", where("match"))
		}
		if _, err := path.Match(*h.Match, ""); err != nil {
			return nil, fmt.Errorf("%s: %q: %v", where("match"), *h.Match, err)
		}
		e.Match = *h.Match
		if h.Port != nil {
			if *h.Port < 1 || *h.Port > 65535 {
				return nil, fmt.Errorf("%s: %d out of range 1..65535", where("port"), *h.Port)
			}
			e.Port = uint16(*h.Port)
		}
		if h.KeyFile == nil || *h.KeyFile == "" {
			return nil, fmt.Errorf("%s: missing", where("key_file"))
		}
		e.KeyFile = expandHome(*h.KeyFile, home)
		if !filepath.IsAbs(e.KeyFile) {
			e.KeyFile = filepath.Join(filepath.Dir(file), e.KeyFile)
		}
		if h.Realm != nil {
			if err := totp.ValidateRealm(*h.Realm); err != nil {
				return nil, fmt.Errorf("%s: %v", where("realm"), err)
			}
			e.Realm = *h.Realm
		}
		if h.Period != nil {
			d, err := time.ParseDuration(*h.Period)
			if err == nil {
				err = totp.ValidatePeriod(d)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %v", where("period"), *h.Period, err)
			}
			e.Period = d
		}
		if h.Slots != nil {
			if *h.Slots < 1 || *h.Slots > totp.MaxSlots {
				return nil, fmt.Errorf("%s: %d out of range 1..%d", where("slots"), *h.Slots, totp.MaxSlots)
			}
			e.Slots = *h.Slots
		}
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

// HasHost reports whether any entry matches host, on whatever port.
func (c *Config) HasHost(host string) bool {
	for i := range c.Hosts {
		if c.Hosts[i].matches(host) {
			return true
		}
	}
	return false
}

func (e *HostEntry) matches(host string) bool {
	ok, _ := path.Match(e.Match, host)
	return ok
}

func expandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[2:])
	}
	return p
}

func headerLines(data []byte, section string) []int {
	var out []int
	for i, l := range strings.Split(string(data), "\n") {
		s := strings.TrimSpace(l)
		if strings.HasPrefix(s, "[[") && strings.TrimSpace(strings.Trim(strings.SplitN(s, "#", 2)[0], "[] \t")) == section {
			out = append(out, i+1)
		}
	}
	return out
}

// lineOf is the first line that sets key.
func lineOf(data []byte, key string) int {
	for i, l := range strings.Split(string(data), "\n") {
		k, _, ok := strings.Cut(strings.TrimSpace(l), "=")
		if ok && strings.TrimSpace(k) == key {
			return i + 1
		}
	}
	return 0
}
