package totp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"time"
)

// Domain is the fixed prefix of every ISN-v1 message.
const Domain = "seqknock/isn/v1"

const (
	// MinKeyLen and MaxKeyLen bound the length of a key in bytes.
	MinKeyLen = 16
	MaxKeyLen = 64
	// MaxRealmLen is the longest realm in bytes.
	MaxRealmLen = 255
	// DefaultPeriod is the length of one counter period.
	DefaultPeriod = 30 * time.Second
	// DefaultSlots is the number of knocks per user, port and period.
	DefaultSlots = 4
	// MaxSlots is the largest number of slots (a slot is one byte).
	MaxSlots = 256
)

// ValidateKey reports whether key has a length ISN-v1 accepts.
func ValidateKey(key []byte) error {
	if len(key) < MinKeyLen || len(key) > MaxKeyLen {
		return fmt.Errorf("key is %d bytes, want %d to %d", len(key), MinKeyLen, MaxKeyLen)
	}
	return nil
}

// ValidateRealm reports whether realm fits in ISN-v1's one-byte length.
func ValidateRealm(realm string) error {
	if len(realm) > MaxRealmLen {
		return fmt.Errorf("realm is %d bytes, want at most %d", len(realm), MaxRealmLen)
	}
	return nil
}

// Deriver computes ISN-v1 values for one key and realm at a time: an
// HMAC-SHA256 keyed once per key (NewDeriver, SetKey) and reset for each
// value. SetKey changes the key, so one Deriver can derive for many keys in
// turn. A Deriver is not safe for concurrent use.
type Deriver struct {
	mac    hash.Hash
	prefix []byte // Domain || u8(len(realm)) || realm
	msg    []byte
	sum    []byte
}

// NewDeriver returns a Deriver for key and realm. It fails if the key or the
// realm has a length ISN-v1 does not allow; the error never shows the key.
func NewDeriver(key []byte, realm string) (*Deriver, error) {
	if err := ValidateRealm(realm); err != nil {
		return nil, err
	}
	prefix := make([]byte, 0, len(Domain)+1+len(realm))
	prefix = append(prefix, Domain...)
	prefix = append(prefix, byte(len(realm)))
	prefix = append(prefix, realm...)
	d := &Deriver{
		prefix: prefix,
		msg:    make([]byte, 0, len(prefix)+2+8+1),
		sum:    make([]byte, 0, sha256.Size),
	}
	if err := d.SetKey(key); err != nil {
		return nil, err
	}
	return d, nil
}

// SetKey makes d derive with key from now on (the realm stays). It fails,
// and leaves d as it was, if the key has a length ISN-v1 does not allow;
// the error never shows the key.
func (d *Deriver) SetKey(key []byte) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	d.mac = hmac.New(sha256.New, key)
	return nil
}

// mac6 is HMAC-SHA256(key, msg) for port, counter and slot.
func (d *Deriver) mac6(port uint16, counter uint64, slot uint8) []byte {
	m := append(d.msg[:0], d.prefix...)
	m = binary.BigEndian.AppendUint16(m, port)
	m = binary.BigEndian.AppendUint64(m, counter)
	m = append(m, slot)
	d.msg = m
	d.mac.Reset()
	d.mac.Write(m)
	d.sum = d.mac.Sum(d.sum[:0])
	return d.sum
}

// ISN returns the initial sequence number for port, counter and slot. It is
// never 0: the kernel reads ISN 0 as "not set".
func (d *Deriver) ISN(port uint16, counter uint64, slot uint8) uint32 {
	return isnFromMAC(d.mac6(port, counter, slot))
}

// isnFromMAC is u32be(mac[0:4]), with 0 mapped to 1.
func isnFromMAC(mac []byte) uint32 {
	isn := binary.BigEndian.Uint32(mac[0:4])
	if isn == 0 {
		isn = 1
	}
	return isn
}

// SourcePort returns the source port reserved by ISN-v1 for source-port
// binding: 1024 + u16be(mac[4:6]) mod 64512.
func (d *Deriver) SourcePort(port uint16, counter uint64, slot uint8) uint16 {
	v := binary.BigEndian.Uint16(d.mac6(port, counter, slot)[4:6])
	return uint16(1024 + uint32(v)%64512)
}

// Knock returns the ISN and the reserved source port of port, counter and
// slot from one HMAC: what a service with source-port binding needs of
// each knock.
func (d *Deriver) Knock(port uint16, counter uint64, slot uint8) (isn uint32, sport uint16) {
	mac := d.mac6(port, counter, slot)
	v := binary.BigEndian.Uint16(mac[4:6])
	return isnFromMAC(mac), uint16(1024 + uint32(v)%64512)
}

// ErrPeriod is returned for a period that is not a whole number of seconds of
// at least one second.
var ErrPeriod = errors.New("period must be a whole number of seconds, at least 1s")

// ValidatePeriod reports whether p can be used as a counter period.
func ValidatePeriod(p time.Duration) error {
	if p < time.Second || p%time.Second != 0 {
		return ErrPeriod
	}
	return nil
}

// Counter returns floor(unix_seconds(t) / period). Times before the Unix
// epoch give counter 0. The period must pass ValidatePeriod.
func Counter(t time.Time, period time.Duration) uint64 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	return uint64(s) / uint64(period/time.Second)
}

// Start returns the instant at which counter begins.
func Start(counter uint64, period time.Duration) time.Time {
	return time.Unix(int64(counter*uint64(period/time.Second)), 0)
}

// Entry is one counter of a window and the instant it stops being valid.
type Entry struct {
	Counter uint64
	Expires time.Time
}

// Window returns the counters valid at t, oldest first: now-tolerance through
// now+tolerance+lookahead, where now is Counter(t, period). The entry for
// counter c expires at (c+tolerance+1)*period, when c leaves the window. A
// counter is valid at every instant before its expiry and at none after it.
// Counters below 0 are left out.
func Window(t time.Time, period time.Duration, tolerance, lookahead int) []Entry {
	if tolerance < 0 {
		tolerance = 0
	}
	if lookahead < 0 {
		lookahead = 0
	}
	now := Counter(t, period)
	first := uint64(0)
	if now > uint64(tolerance) {
		first = now - uint64(tolerance)
	}
	last := now + uint64(tolerance) + uint64(lookahead)
	out := make([]Entry, 0, last-first+1)
	for c := first; c <= last; c++ {
		out = append(out, Entry{Counter: c, Expires: Start(c+uint64(tolerance)+1, period)})
	}
	return out
}

// NextBoundary returns the first period boundary strictly after t.
func NextBoundary(t time.Time, period time.Duration) time.Time {
	return Start(Counter(t, period)+1, period)
}
