package gateway

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/seqknock/seqknock/internal/tomlerr"
)

// DefaultTable is the gateway's nftables table (family inet).
const DefaultTable = "seqknock-gw"

// DefaultListenPort is the port the redirected connections arrive at.
const DefaultListenPort = 7022

// DefaultListenMark is the SO_MARK of the gateway's listeners, "sk" in its
// top bytes: the table lets new flows reach the listen port only while a
// socket with this mark listens there. Setting a mark takes
// CAP_NET_ADMIN, so another user's listener on the port never gets one.
const DefaultListenMark = 0x736b0000

// Config is the gateway config, /etc/seqknock/gateway.toml.
type Config struct {
	Path string
	// ClientConfig is the client config whose [[host]] entries hold the
	// keys (default: client.toml beside the gateway config).
	ClientConfig string
	// ListenPort takes the redirected connections, on every address.
	ListenPort uint16
	// ListenMark is the SO_MARK of the listeners (never 0).
	ListenMark uint32
	Table      string
	Dests      []Destination
}

// Destination is one address and port the gateway knocks on for the LAN.
type Destination struct {
	Addr netip.AddrPort
	// Host is looked up in the client config's [[host]] entries before
	// the address ("" when not set).
	Host string
	// Allow are the LAN sources that may use it, of Addr's family.
	Allow []netip.Prefix
}

type rawConfig struct {
	ClientConfig *string `toml:"client_config"`
	ListenPort   *int    `toml:"listen_port"`
	ListenMark   *int64  `toml:"listen_mark"`
	Table        *string `toml:"table"`
	Destination  []struct {
		Address *string  `toml:"address"`
		Port    *int     `toml:"port"`
		Host    *string  `toml:"host"`
		Allow   []string `toml:"allow"`
	} `toml:"destination"`
}

// LoadConfig reads the gateway config file.
func LoadConfig(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &tomlerr.Error{File: file, Err: err}
	}
	return ParseConfig(file, data)
}

// ParseConfig checks gateway config text. Errors name the file, the line
// and the field.
func ParseConfig(file string, data []byte) (*Config, error) {
	doc := tomlerr.New(file, data)
	var raw rawConfig
	if err := doc.Decode(&raw); err != nil {
		return nil, err
	}
	c := &Config{Path: file, ListenPort: DefaultListenPort, ListenMark: DefaultListenMark, Table: DefaultTable,
		ClientConfig: filepath.Join(filepath.Dir(file), "client.toml")}
	top := func(key, format string, a ...any) error {
		return doc.At("", -1, key, key, fmt.Errorf(format, a...))
	}
	if raw.ClientConfig != nil {
		p := *raw.ClientConfig
		if p == "" {
			return nil, top("client_config", "empty")
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(file), p)
		}
		c.ClientConfig = p
	}
	if raw.ListenPort != nil {
		if *raw.ListenPort < 1 || *raw.ListenPort > 65535 {
			return nil, top("listen_port", "%d out of range 1..65535", *raw.ListenPort)
		}
		c.ListenPort = uint16(*raw.ListenPort)
	}
	if raw.ListenMark != nil {
		if *raw.ListenMark < 1 || *raw.ListenMark > 0xffffffff {
			return nil, top("listen_mark", "%d out of range 1..0xffffffff", *raw.ListenMark)
		}
		c.ListenMark = uint32(*raw.ListenMark)
	}
	if raw.Table != nil {
		if err := checkTableName(*raw.Table); err != nil {
			return nil, top("table", "%q: %v", *raw.Table, err)
		}
		c.Table = *raw.Table
	}
	if len(raw.Destination) == 0 {
		return nil, top("destination", "no [[destination]]: the gateway would serve nothing")
	}
	seen := map[netip.AddrPort]int{}
	for i, d := range raw.Destination {
		fail := func(field, format string, a ...any) error {
			key, _, _ := strings.Cut(field, "[")
			return doc.At("destination", i, key, fmt.Sprintf("destination[%d].%s", i, field), fmt.Errorf(format, a...))
		}
		if d.Address == nil {
			return nil, fail("address", "missing")
		}
		addr, err := netip.ParseAddr(*d.Address)
		if err != nil || addr.Zone() != "" {
			return nil, fail("address", "%q: want an IPv4 or IPv6 address (no name: the kernel's rule matches addresses)", *d.Address)
		}
		addr = addr.Unmap()
		if addr.IsUnspecified() || addr.IsLoopback() || addr.IsMulticast() {
			return nil, fail("address", "%s: want a unicast address of a server", addr)
		}
		if d.Port == nil {
			return nil, fail("port", "missing")
		}
		if *d.Port < 1 || *d.Port > 65535 {
			return nil, fail("port", "%d out of range 1..65535", *d.Port)
		}
		ap := netip.AddrPortFrom(addr, uint16(*d.Port))
		if j, dup := seen[ap]; dup {
			return nil, fail("port", "%s is also destination[%d]", ap, j)
		}
		seen[ap] = i
		dest := Destination{Addr: ap}
		if d.Host != nil {
			if *d.Host == "" || strings.ContainsAny(*d.Host, " \t\n") {
				return nil, fail("host", "%q: want the name of a [[host]] of the client config", *d.Host)
			}
			dest.Host = *d.Host
		}
		if len(d.Allow) == 0 {
			return nil, fail("allow", "missing or empty: list the LAN sources (addresses or prefixes) that may use %s", ap)
		}
		for j, a := range d.Allow {
			p, err := parsePrefix(a)
			if err != nil {
				return nil, fail(fmt.Sprintf("allow[%d]", j), "%q: %v", a, err)
			}
			if p.Addr().Is4() != addr.Is4() {
				return nil, fail(fmt.Sprintf("allow[%d]", j), "%s: not of %s's family (the source of a connection to an IPv%d address is IPv%[3]d)", p, addr, map[bool]int{true: 4, false: 6}[addr.Is4()])
			}
			dest.Allow = append(dest.Allow, p)
		}
		c.Dests = append(c.Dests, dest)
	}
	return c, nil
}

// parsePrefix reads an address (a /32 or /128) or a prefix; the prefix's
// host bits must be zero.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("want an address or a prefix")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("want an address or a prefix")
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("an IPv4-mapped prefix: write the IPv4 prefix")
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("host bits set (did you mean %s?)", p.Masked())
	}
	return p, nil
}

// checkTableName accepts what nft accepts unquoted: letters, digits, '-',
// '_' and '.', starting with a letter, at most 31 bytes.
func checkTableName(s string) error {
	if s == "" || len(s) > 31 {
		return fmt.Errorf("want 1 to 31 characters")
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if i == 0 && !letter {
			return fmt.Errorf("want a letter first")
		}
		if !letter && !(r >= '0' && r <= '9') && r != '-' && r != '_' && r != '.' {
			return fmt.Errorf("%q not allowed", r)
		}
	}
	return nil
}

// Lookup returns the destination dst, or nil.
func (c *Config) Lookup(dst netip.AddrPort) *Destination {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if i := slices.IndexFunc(c.Dests, func(d Destination) bool { return d.Addr == dst }); i >= 0 {
		return &c.Dests[i]
	}
	return nil
}

// Allowed reports whether src may use d.
func (d *Destination) Allowed(src netip.Addr) bool {
	return slices.ContainsFunc(d.Allow, func(p netip.Prefix) bool { return p.Contains(src.Unmap()) })
}
