//go:build linux

package client

import (
	"cmp"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/seqknock/seqknock/client/broker"
	"github.com/seqknock/seqknock/tcpsign"
	"github.com/seqknock/seqknock/totp"
	"github.com/seqknock/seqknock/totp/keyfile"
)

// Flags are the command line's say in a connection: each overrides what
// the client config's matching [[host]] says. A nil field, or an empty
// string, was not given.
type Flags struct {
	// Alias is the name given to ssh (its %n), looked up before the host.
	Alias   string
	KeyFile string
	// SignKeyFile signs the connection with TCP-MD5 using that key
	// (overriding the [[host]]'s sign_key_file).
	SignKeyFile string
	Realm       *string
	Period      *time.Duration
	Slots       *int
	// Broker is the broker's socket (--broker), over the config's.
	Broker string
	// BindSourcePort (--bind-source-port) over the [[host]]'s
	// bind_source_port.
	BindSourcePort *bool
	// IPv4 and IPv6 restrict the addresses tried (-4, -6).
	IPv4, IPv6 bool
	// SynTimeout, Attempts, Timeout and ClockOffset go to the Dialer as
	// they are.
	SynTimeout  time.Duration
	Attempts    int
	Timeout     time.Duration
	ClockOffset time.Duration
	// Verbosef, when set, is told which [[host]] matched, where the key
	// comes from, and (through the Dialer) each knock tried.
	Verbosef func(format string, a ...any)
}

// UsageError is a mistake in how seqknock was called (a flag out of range,
// no key for the host): the command line, not the world, must change.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usagef(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }

// newHostEntry is a [[host]] that sets nothing: the defaults, the one place
// the client sets them.
func newHostEntry() HostEntry {
	return HostEntry{Period: totp.DefaultPeriod, Slots: totp.DefaultSlots}
}

// ValidateSlots reports whether n slots per period can be used: 1 to
// totp.MaxSlots.
func ValidateSlots(n int) error {
	if n < 1 || n > totp.MaxSlots {
		return fmt.Errorf("%d out of range 1..%d", n, totp.MaxSlots)
	}
	return nil
}

// CheckKnockFlags checks a realm, period and number of slots given as the
// flags --realm, --period and --slots; the error names the flag.
func CheckKnockFlags(realm string, period time.Duration, slots int) error {
	if err := totp.ValidatePeriod(period); err != nil {
		return usagef("--period: %w", err)
	}
	if err := ValidateSlots(slots); err != nil {
		return usagef("--slots %w", err)
	}
	if err := totp.ValidateRealm(realm); err != nil {
		return usagef("--realm: %w", err)
	}
	return nil
}

// apply puts the realm, period and slots the flags give over e's.
func (f Flags) apply(e *HostEntry) {
	if f.Realm != nil {
		e.Realm = *f.Realm
	}
	if f.Period != nil {
		e.Period = *f.Period
	}
	if f.Slots != nil {
		e.Slots = *f.Slots
	}
	if f.BindSourcePort != nil {
		e.BindSourcePort = *f.BindSourcePort
	}
}

// Knock returns the realm, period and slots the flags give, over the
// defaults, checked: what seqknock isn derives with (Resolve does the same
// over a [[host]]).
func Knock(f Flags) (realm string, period time.Duration, slots int, err error) {
	e := newHostEntry()
	f.apply(&e)
	if err := CheckKnockFlags(e.Realm, e.Period, e.Slots); err != nil {
		return "", 0, 0, err
	}
	return e.Realm, e.Period, e.Slots, nil
}

// BrokerPath is the broker's socket: flag (--broker) if given, else the
// config's broker, else broker.DefaultPath.
func BrokerPath(cfg *Config, flag string) string {
	switch {
	case flag != "":
		return flag
	case cfg != nil && cfg.Broker != "":
		return cfg.Broker
	}
	return broker.DefaultPath
}

// Resolve turns the client config and the flags into the Dialer of a
// connection to host:port, its Reserve left to the caller (nil: slots
// counted in this process alone). The first [[host]] matching the alias, then the
// host, gives the key, realm, period and slots; each flag given overrides
// its field (--key-file also drops the entry's fallback keys). Mistakes in
// the flags, or no key at all, are a UsageError; a key file that cannot be
// used is an error from keyfile.Load.
func Resolve(cfg *Config, f Flags, host string, port uint16) (*Dialer, error) {
	verbosef := f.Verbosef
	if verbosef == nil {
		verbosef = func(string, ...any) {}
	}
	if f.IPv4 && f.IPv6 {
		return nil, usagef("-4 and -6 exclude each other")
	}
	// The name given to ssh first (Host prod), then the one it connects to
	// (its HostName, 203.0.113.7).
	names := []string{host}
	if f.Alias != "" && f.Alias != host {
		names = []string{f.Alias, host}
	}
	e := newHostEntry()
	for _, n := range names {
		if m := cfg.Lookup(n, port); m != nil {
			e = *m
			verbosef("%s matches [[host]] match = %q in %s", n, m.Match, cfg.Path)
			break
		}
	}
	if f.KeyFile != "" {
		e.KeyFile, e.Fallback = f.KeyFile, nil
		verbosef("key from --key-file %s", f.KeyFile)
	}
	if f.SignKeyFile != "" {
		e.Sign, e.SignKeyFile = tcpsign.ModeMD5, f.SignKeyFile
	}
	f.apply(&e)
	if e.KeyFile == "" {
		return nil, cfg.NoHost(fmt.Sprintf("%s port %d", strings.Join(names, " or "), port), "give --key-file")
	}
	if err := CheckKnockFlags(e.Realm, e.Period, e.Slots); err != nil {
		return nil, err
	}
	if f.Attempts < 0 || f.Attempts > e.Slots {
		return nil, usagef("--attempts %d out of range 1..%d (the slots per period)", f.Attempts, e.Slots)
	}
	d := &Dialer{
		Realm:          e.Realm,
		Period:         e.Period,
		Slots:          e.Slots,
		BindSourcePort: e.BindSourcePort,
		Network:        "tcp",
		Broker:         BrokerPath(cfg, f.Broker),
		SynTimeout:     f.SynTimeout,
		Attempts:       f.Attempts,
		Timeout:        f.Timeout,
		ClockOffset:    f.ClockOffset,
	}
	if f.IPv4 {
		d.Network = "tcp4"
	}
	if f.IPv6 {
		d.Network = "tcp6"
	}
	for i, file := range append([]string{e.KeyFile}, e.Fallback...) {
		k, err := keyfile.Load(file)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			d.Key = k
		} else {
			d.Fallback = append(d.Fallback, k)
		}
	}
	if e.BindSourcePort {
		verbosef("bind_source_port: each knock comes from the source port it reserves")
	}
	if e.SignKeyFile != "" {
		k, err := keyfile.Load(e.SignKeyFile)
		if err != nil {
			return nil, fmt.Errorf("sign key: %w", err)
		}
		d.SignKey = k
		verbosef("signing with %s, key from %s", e.Sign, e.SignKeyFile)
	}
	if f.Verbosef != nil {
		synTimeout := cmp.Or(d.SynTimeout, DefaultSynTimeout)
		d.OnBroker = func(path string) {
			verbosef("no CAP_NET_ADMIN here: the broker at %s sets the ISN", path)
		}
		d.OnAttempt = func(ap netip.AddrPort, counter uint64, slot int, _ uint32) {
			verbosef("knock %s counter %d slot %d (of %d), waiting %v for a SYN-ACK", ap, counter, slot, d.Slots, synTimeout)
		}
	}
	return d, nil
}
