package server

import (
	"fmt"
	"math"
	"time"

	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

// OddsWarnAbove is the chance per random SYN above which check-config
// warns.
const OddsWarnAbove = 1e-6

// UnlimitedRate is the guess rate without the limits: what one sender
// reached on a 2-core VM (565,000 random SYNs a second). It also caps
// GuessRate.
const UnlimitedRate = 565_000

// ManySources is the attacker check-config and the README figure the odds
// for besides a single source: 10,000 addresses (or IPv6 prefixes).
const ManySources = 10_000

// GuessRate is how many SYNs a second an attacker with sources addresses
// (each a source of guess_prefix4/6) gets looked up in the valid knocks
// under cfg's limits, sending as fast as it can:
//
//   - each source fresh to the meters: guess_limit a second (its burst
//     once, left out here); with the per-source limit off, its bandwidth;
//   - while all sources together are over guess_global_limit, each is
//     locked out at its next miss, so they get the cap plus one SYN per
//     source and lockout (1 s) beyond it;
//   - a locked-out source's SYNs are looked up only within
//     lockout_lookup_limit, one budget for all of them together;
//
// and never more than UnlimitedRate. Without limits it is UnlimitedRate.
func GuessRate(cfg *Config, sources int) float64 {
	if cfg.Guess.Off() && cfg.GuessGlobal.Off() {
		return UnlimitedRate
	}
	n := float64(sources)
	fresh := math.Inf(1)
	if !cfg.Guess.Off() {
		fresh = n * cfg.Guess.PerSecond()
	}
	if !cfg.GuessGlobal.Off() {
		fresh = math.Min(fresh, cfg.GuessGlobal.PerSecond()+n/nftgen.LockoutTimeout.Seconds())
	}
	return math.Min(UnlimitedRate, fresh+cfg.LockoutLookup.PerSecond())
}

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
// "1.4 days", "287 days", "7,900 years".
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
	case s < 10*86400:
		return fmt.Sprintf("%.2g days", s/86400)
	case s < 365*86400:
		return fmt.Sprintf("%.0f days", s/86400)
	case s < 1000*365*86400:
		return fmt.Sprintf("%.0f years", s/(365*86400))
	}
	return fmt.Sprintf("%.2g years", s/(365*86400))
}
