package server

import (
	"fmt"
	"math"
	"time"

	"github.com/seqknock/seqknock/totp"
)

// OddsWarnAbove is the chance per random SYN above which check-config
// warns.
const OddsWarnAbove = 1e-6

// UnlimitedRate is the guess rate the odds are figured at: what one sender
// reached on a 2-core VM (565,000 random SYNs a second, measured for issue
// 13). The guess limits do not lower it: every SYN is looked up in the
// valid knocks before any lockout, so that a lockout a spoofer earns with a
// victim's source address never drops the victim's knocks; the limits bound
// the work and the log lines an unknocked flood causes, not its odds.
const UnlimitedRate = 565_000

// Odds are a protected port's chances against random guessing: Valid
// knocks of the 2^32 sequence numbers are valid at any time, so each
// random SYN wins with PerSYN = Valid/2^32, and 50% of winning takes
// SYNs50 = ln 2 / PerSYN SYNs (for small PerSYN). At a port with
// bind_source_port (Bits 48) the SYN must also come from the knock's one
// source port of SourcePorts: PerSYN = Valid/(2^32 × 64,512), about
// Valid/2^48.
type Odds struct {
	Port   uint16
	Bits   int // 32, or 48 with bind_source_port
	Valid  int
	PerSYN float64
	SYNs50 float64
}

// SourcePorts is how many source ports ISN-v1 reserves from (1024..65535):
// a guess at a bound port must hit the one its knock reserves.
const SourcePorts = 64512

// PortOdds returns the odds of each service port at now: its valid knocks
// are its users' unexpired keys times the window's counters times the
// slots.
func PortOdds(cfg *Config, now time.Time) []Odds {
	counters := len(totp.Window(now, cfg.Period, cfg.Tolerance, cfg.Lookahead))
	keys := map[string]int{}
	for _, u := range cfg.Users {
		for _, k := range u.Keys {
			if k.ValidAt(now) {
				keys[u.Name]++
			}
		}
	}
	var out []Odds
	for _, svc := range cfg.Services {
		n := 0
		users := svc.Users
		if len(users) == 0 {
			for _, u := range cfg.Users {
				users = append(users, u.Name)
			}
		}
		for _, u := range users {
			n += keys[u]
		}
		valid := n * counters * cfg.Slots
		p, bits := float64(valid)/(1<<32), 32
		if svc.BindSourcePort {
			p, bits = p/SourcePorts, 48
		}
		o := Odds{Port: svc.Port, Bits: bits, Valid: valid, PerSYN: p, SYNs50: math.Inf(1)}
		if p > 0 {
			o.SYNs50 = math.Ln2 / p
		}
		out = append(out, o)
	}
	return out
}

// Humanize writes a duration in seconds as "0.04 s", "7.3 min", "6.9 h",
// "287 days", "7,900 years".
func Humanize(s float64) string {
	switch {
	case math.IsInf(s, 1):
		return "never"
	case s < 60:
		return fmt.Sprintf("%.2g s", s)
	case s < 3600:
		return fmt.Sprintf("%.2g min", s/60)
	case s < 86400:
		return fmt.Sprintf("%.2g h", s/3600)
	case s < 365*86400:
		return fmt.Sprintf("%.0f days", s/86400)
	case s < 1000*365*86400:
		return fmt.Sprintf("%.0f years", s/(365*86400))
	}
	return fmt.Sprintf("%.2g years", s/(365*86400))
}
