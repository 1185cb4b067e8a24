package keygencmd

import (
	"fmt"
	"io"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/seqknock/seqknock/internal/cliconv"
	"github.com/seqknock/seqknock/totp"
	"github.com/seqknock/seqknock/totp/keyfile"
	"github.com/urfave/cli/v2"
)

// Command is the keygen command of binary ("seqknock" or "seqknockd").
// check, when set, runs first and may refuse (the client refuses to run it
// under sudo).
func Command(binary string, check func(*cli.Context) error) *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "generate a key (32 random bytes, one base64 line)",
		UsageText: binary + " keygen [-o FILE] [--force]\n   " + binary + " keygen -o FILE --stanzas [--port PORT] [--realm REALM] [--bind-source-port] [--replaces OLD --not-after TIME | --device NAME] USER HOST",
		Description: "Writes a new key to FILE with mode 0600, or to standard output without -o. " +
			"An existing FILE is kept unless --force is given. " +
			"With --stanzas, also prints the server's [[user]] stanza for USER and the client's [[host]] stanza " +
			"for HOST to paste: they name the key files and never contain key material. With --replaces, " +
			"the stanzas are those of a key rotation: the new key preferred, the old one valid until TIME. With --device, " +
			"the key is one more of USER's, for the device NAME alone: the server's line lists it with USER's other keys " +
			"(two clients knocking with one key spend each other's slots). The stanzas show the key's fingerprint.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the key to `FILE` (mode 0600)"},
			&cli.BoolFlag{Name: "force", Usage: "replace FILE if it exists"},
			&cli.BoolFlag{Name: "stanzas", Usage: "print the server and client config stanzas for USER and HOST"},
			&cli.UintFlag{Name: "port", Value: 22, Usage: "protected `PORT` in the stanzas"},
			&cli.StringFlag{Name: "realm", Usage: "the server's `REALM`, for the client stanza"},
			&cli.BoolFlag{Name: "bind-source-port", Usage: "the service has bind_source_port = true: so has the client stanza"},
			&cli.StringFlag{Name: "replaces", Usage: "the server's key `FILE` this key replaces (a rotation)"},
			&cli.StringFlag{Name: "not-after", Usage: "with --replaces: when the old key stops working, `TIME` in RFC 3339"},
			&cli.StringFlag{Name: "device", Usage: "the key is for USER's device `NAME` alone, one more of USER's keys"},
		},
		Action: func(c *cli.Context) error {
			if check != nil {
				if err := check(c); err != nil {
					return err
				}
			}
			var st *stanzaArgs
			if c.Bool("stanzas") {
				var err error
				if st, err = stanzaArgsOf(c); err != nil {
					return err
				}
			} else if c.NArg() > 0 {
				return cliconv.Usagef("keygen: unexpected argument %q", c.Args().First())
			} else if c.IsSet("replaces") || c.IsSet("not-after") || c.IsSet("port") || c.IsSet("realm") || c.IsSet("bind-source-port") || c.IsSet("device") {
				return cliconv.Usagef("keygen: --port, --realm, --bind-source-port, --replaces, --not-after and --device go with --stanzas")
			}
			key := keyfile.Generate()
			out := c.String("output")
			if out == "" {
				_, err := c.App.Writer.Write(keyfile.Encode(key))
				return err
			}
			if err := keyfile.Write(out, key, c.Bool("force")); err != nil {
				return err
			}
			if st != nil {
				abs, err := filepath.Abs(out)
				if err != nil {
					return err
				}
				st.keyFile = abs
				st.fingerprint = totp.Fingerprint(key)
				_, err = io.WriteString(c.App.Writer, st.text())
				return err
			}
			return nil
		},
	}
}

// stanzaArgs are what keygen --stanzas prints stanzas for.
type stanzaArgs struct {
	user, host, realm string
	port              uint16
	bound             bool      // bind_source_port in the client stanza
	keyFile           string    // the new key, as the server reads it
	replaces          string    // the old key's file on the server, or ""
	notAfter          time.Time // when the old key stops
	device            string    // the device the key is for, or ""
	fingerprint       string    // the new key's
}

// userNameRE is the server's rule for a [[user]] name; compiled when
// first used, not in every start of the client (about 1 ms).
var userNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$`) })

func stanzaArgsOf(c *cli.Context) (*stanzaArgs, error) {
	if c.NArg() != 2 {
		return nil, cliconv.Usagef("keygen --stanzas: want USER HOST, got %d arguments", c.NArg())
	}
	if c.String("output") == "" {
		return nil, cliconv.Usagef("keygen --stanzas: needs -o FILE (the stanzas name the key file; the key is never printed with them)")
	}
	st := &stanzaArgs{user: c.Args().Get(0), host: c.Args().Get(1), realm: c.String("realm"), bound: c.Bool("bind-source-port")}
	if !userNameRE().MatchString(st.user) {
		return nil, cliconv.Usagef("keygen --stanzas: user %q: want letters, digits, _ . @ -", st.user)
	}
	if st.host == "" || strings.ContainsAny(st.host, "\"\\\n\r\t") {
		return nil, cliconv.Usagef("keygen --stanzas: host %q: want a host name or pattern", st.host)
	}
	if _, err := path.Match(st.host, ""); err != nil {
		return nil, cliconv.Usagef("keygen --stanzas: host %q: %v", st.host, err)
	}
	p := c.Uint("port")
	if p < 1 || p > 65535 {
		return nil, cliconv.Usagef("keygen --stanzas: --port %d out of range 1..65535", p)
	}
	st.port = uint16(p)
	if err := totp.ValidateRealm(st.realm); err != nil {
		return nil, cliconv.Usagef("keygen --stanzas: --realm: %w", err)
	}
	if d := c.String("device"); c.IsSet("device") {
		if !deviceRE().MatchString(d) {
			return nil, cliconv.Usagef("keygen --stanzas: --device %q: want letters, digits, _ . -", d)
		}
		if c.IsSet("replaces") {
			return nil, cliconv.Usagef("keygen --stanzas: --device and --replaces exclude each other (a device's key is one more key, not a replacement)")
		}
		st.device = d
	}
	if c.IsSet("replaces") != c.IsSet("not-after") {
		return nil, cliconv.Usagef("keygen --stanzas: --replaces and --not-after go together")
	}
	if c.IsSet("replaces") {
		old, err := filepath.Abs(c.String("replaces"))
		if err != nil {
			return nil, err
		}
		st.replaces = old
		t, err := time.Parse(time.RFC3339, c.String("not-after"))
		if err != nil {
			return nil, cliconv.Usagef("keygen --stanzas: --not-after %q is not RFC 3339 (like 2027-01-01T00:00:00Z)", c.String("not-after"))
		}
		st.notAfter = t
	}
	return st, nil
}

// deviceRE is what a --device name may be: it goes into comments only.
var deviceRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`) })

// tomlQuote is s as a TOML basic string.
func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// clientKeyPath is where the user keeps a key file on the client.
func clientKeyPath(serverPath string) string {
	return "~/.config/seqknock/" + filepath.Base(serverPath)
}

// text is the two stanzas, as comments and TOML; no key material.
func (st *stanzaArgs) text() string {
	q := tomlQuote
	var b strings.Builder
	keys := "key_file = " + q(clientKeyPath(st.keyFile))
	if st.device != "" {
		fmt.Fprintf(&b, "# Server: a key of its own for %s's device %s (fingerprint %s). Every key a [[user]]\n"+
			"# lists works: list this one with %s's other keys in /etc/seqknock/seqknockd.toml (key_file = \"A\"\n"+
			"# becomes key_files = [\"A\", ...]), then systemctl reload seqknockd.\n",
			st.user, st.device, st.fingerprint, st.user)
		fmt.Fprintf(&b, "key_files = [\n  # %s's other keys stay listed here, one per device\n  %s, # %s\n]\n", st.user, q(st.keyFile), st.device)
		fmt.Fprintf(&b, "\n# Client: give %s the file %s over a secure channel, to keep on %s alone as %s (mode 0600),\n",
			st.user, st.keyFile, st.device, clientKeyPath(st.keyFile))
		fmt.Fprintf(&b, "# and this in ~/.config/seqknock/client.toml there (seqknock fingerprint shows %s):\n", st.fingerprint)
	} else {
		fmt.Fprintf(&b, "# Server: add to /etc/seqknock/seqknockd.toml (or a drop-in it includes), then systemctl reload seqknockd.\n")
		fmt.Fprintf(&b, "# The key's fingerprint: %s (seqknock fingerprint shows the same on the client).\n", st.fingerprint)
		if st.replaces == "" {
			fmt.Fprintf(&b, "[[user]]\nname = %s\nkey_file = %s\n", q(st.user), q(st.keyFile))
		} else {
			fmt.Fprintf(&b, "# This replaces the [[user]] table of %s: both keys work until %s, then only the new one.\n",
				st.user, st.notAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(&b, "[[user]]\nname = %s\nkey_files = [\n  %s,\n  { file = %s, not_after = %s },\n]\n",
				q(st.user), q(st.keyFile), q(st.replaces), st.notAfter.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(&b, "\n# Client: give %s the file %s over a secure channel, to keep as %s (mode 0600),\n",
			st.user, st.keyFile, clientKeyPath(st.keyFile))
		if st.replaces == "" {
			fmt.Fprintf(&b, "# and this in ~/.config/seqknock/client.toml:\n")
		} else {
			fmt.Fprintf(&b, "# and this in ~/.config/seqknock/client.toml in place of the old [[host]] (new key first, old as fallback):\n")
			keys = fmt.Sprintf("key_files = [%s, %s]", q(clientKeyPath(st.keyFile)), q(clientKeyPath(st.replaces)))
		}
	}
	fmt.Fprintf(&b, "[[host]]\nmatch = %s\nport = %d\n%s\nrealm = %s\n", q(st.host), st.port, keys, q(st.realm))
	if st.bound {
		fmt.Fprintf(&b, "bind_source_port = true\n")
	}
	return b.String()
}
