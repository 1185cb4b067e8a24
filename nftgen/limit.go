package nftgen

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
)

// Limit is a packet rate as nft writes it: Rate packets per Unit, with
// Burst packets more allowed at once (nft's burst: on top of the rate).
type Limit struct {
	Rate  uint32
	Unit  RateUnit
	Burst uint32
}

// RateUnit is the time unit of a Limit.
type RateUnit string

// The units a Limit may use.
const (
	PerSecond RateUnit = "second"
	PerMinute RateUnit = "minute"
	PerHour   RateUnit = "hour"
)

// Off reports whether the limit is off (rate 0).
func (l Limit) Off() bool { return l.Rate == 0 }

// String is "10/second+20" ("0" when off).
func (l Limit) String() string {
	if l.Off() {
		return "0"
	}
	return fmt.Sprintf("%d/%s+%d", l.Rate, l.Unit, l.Burst)
}

// PerSecond is the limit's rate in packets a second.
func (l Limit) PerSecond() float64 {
	switch l.Unit {
	case PerMinute:
		return float64(l.Rate) / 60
	case PerHour:
		return float64(l.Rate) / 3600
	}
	return float64(l.Rate)
}

func (u RateUnit) expr() (expr.LimitTime, bool) {
	switch u {
	case PerSecond:
		return expr.LimitTimeSecond, true
	case PerMinute:
		return expr.LimitTimeMinute, true
	case PerHour:
		return expr.LimitTimeHour, true
	}
	return 0, false
}

// ParseLimit reads "N/second", "N/minute" or "N/hour" (burst left 0), or
// "0" for off.
func ParseLimit(s string) (Limit, error) {
	if s == "0" {
		return Limit{}, nil
	}
	n, u, ok := strings.Cut(s, "/")
	rate, err := strconv.ParseUint(n, 10, 32)
	if !ok || err != nil || rate == 0 {
		return Limit{}, fmt.Errorf("%q: want N/second, N/minute or N/hour (N at least 1), or \"0\" for off", s)
	}
	l := Limit{Rate: uint32(rate), Unit: RateUnit(u)}
	if _, ok := l.Unit.expr(); !ok {
		return Limit{}, fmt.Errorf("%q: unit %q is not second, minute or hour", s, u)
	}
	return l, nil
}

func parseLimitField(s string) (Limit, error) {
	if s == "0" {
		return Limit{}, nil
	}
	r, b, ok := strings.Cut(s, "+")
	if !ok {
		return Limit{}, fmt.Errorf("%q: no burst", s)
	}
	l, err := ParseLimit(r)
	if err != nil {
		return Limit{}, err
	}
	burst, err := strconv.ParseUint(b, 10, 32)
	if err != nil {
		return Limit{}, fmt.Errorf("burst: %w", err)
	}
	l.Burst = uint32(burst)
	return l, nil
}

// DropLogRate is how many dropped packets a second the drop log samples.
const DropLogRate = 10

// GlobalBurst is the burst of the global cap: nft's default, which it
// leaves out of the listing.
const GlobalBurst = 5
