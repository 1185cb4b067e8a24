package client

import (
	"fmt"
	"time"

	"github.com/seqknock/seqknock/client/broker"
	"github.com/seqknock/seqknock/totp"
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
