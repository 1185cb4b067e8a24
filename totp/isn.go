package totp

import (
	"crypto/sha256"
	"encoding"
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

// Deriver computes ISN-v1 values for one key and realm at a time. It is
// HMAC-SHA256 (RFC 2104) over two reused SHA-256 states: the key's inner
// and outer padded blocks are hashed once per key (SetKey), and each value
// restarts from those saved states, so it costs two SHA-256 blocks and no
// allocation; SetKey changes the key without allocating either, so one
// Deriver can derive for many keys in turn. A Deriver is not safe for
// concurrent use.
type Deriver struct {
	inner, outer   hash.Hash
	iload, oload   encoding.BinaryUnmarshaler
	isaved, osaved []byte // the states after the key's inner and outer block
	pad            [sha256.BlockSize]byte
	prefix         []byte // Domain || u8(len(realm)) || realm
	msg            []byte
	sum            []byte
}

// NewDeriver returns a Deriver for key and realm. It fails if the key or the
// realm has a length ISN-v1 does not allow; the error never shows the key.
func NewDeriver(key []byte, realm string) (*Deriver, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if err := ValidateRealm(realm); err != nil {
		return nil, err
	}
	prefix := make([]byte, 0, len(Domain)+1+len(realm))
	prefix = append(prefix, Domain...)
	prefix = append(prefix, byte(len(realm)))
	prefix = append(prefix, realm...)
	inner, outer := sha256.New(), sha256.New()
	d := &Deriver{
		inner:  inner,
		outer:  outer,
		iload:  inner.(encoding.BinaryUnmarshaler),
		oload:  outer.(encoding.BinaryUnmarshaler),
		isaved: make([]byte, 0, savedLen),
		osaved: make([]byte, 0, savedLen),
		prefix: prefix,
		msg:    make([]byte, 0, len(prefix)+2+8+1),
		sum:    make([]byte, 0, sha256.Size),
	}
	if err := d.SetKey(key); err != nil {
		return nil, err
	}
	return d, nil
}

// savedLen is room for a marshalled SHA-256 state (108 bytes in Go 1.26).
const savedLen = 128

// SetKey makes d derive with key from now on (the realm stays). It fails,
// and leaves d as it was, if the key has a length ISN-v1 does not allow;
// the error never shows the key.
func (d *Deriver) SetKey(key []byte) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	// MaxKeyLen is SHA-256's block size: a key is never hashed first.
	// The pad is a field, not a local: a local would escape to the heap.
	pad := d.pad[:]
	clear(pad)
	copy(pad, key)
	for i := range pad {
		pad[i] ^= 0x36
	}
	d.isaved = save(d.inner, pad, d.isaved)
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	d.osaved = save(d.outer, pad, d.osaved)
	clear(pad)
	return nil
}

// save hashes block from a fresh state of h and returns that state,
// marshalled into buf.
func save(h hash.Hash, block, buf []byte) []byte {
	h.Reset()
	h.Write(block)
	out, err := h.(encoding.BinaryAppender).AppendBinary(buf[:0])
	if err != nil {
		panic("totp: sha256 state: " + err.Error()) // crypto/sha256 always marshals
	}
	return out
}

func (d *Deriver) mac6(port uint16, counter uint64, slot uint8) []byte {
	m := append(d.msg[:0], d.prefix...)
	m = binary.BigEndian.AppendUint16(m, port)
	m = binary.BigEndian.AppendUint64(m, counter)
	m = append(m, slot)
	d.msg = m
	if d.iload.UnmarshalBinary(d.isaved) != nil || d.oload.UnmarshalBinary(d.osaved) != nil {
		panic("totp: sha256 state") // its own marshalled state: unreachable
	}
	d.inner.Write(m)
	d.sum = d.inner.Sum(d.sum[:0])
	d.outer.Write(d.sum)
	d.sum = d.outer.Sum(d.sum[:0])
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
