package totp

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

type vector struct {
	file    string
	line    int
	key     []byte
	port    uint16
	counter uint64
	slot    uint8
	realm   string
	isn     uint32
}

// readVectors reads a vector file. realmLast says whether the realm is the
// last column (isn-v1-extra.txt) or the fifth (isn-v1.txt, "-" for empty).
func readVectors(t *testing.T, name string, realmLast bool) []vector {
	t.Helper()
	path := filepath.Join("testdata", name)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []vector
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var fs []string
		if realmLast {
			fs = strings.SplitN(line, " ", 6)
		} else {
			fs = strings.Fields(line)
		}
		if len(fs) != 6 {
			t.Fatalf("%s:%d: want 6 fields, got %d", path, n, len(fs))
		}
		v := vector{file: path, line: n}
		var realm, isn string
		if realmLast {
			isn, realm = fs[4], fs[5]
		} else {
			realm, isn = fs[4], fs[5]
			if realm == "-" {
				realm = ""
			}
		}
		v.realm = realm
		if v.key, err = base64.StdEncoding.DecodeString(fs[0]); err != nil {
			t.Fatalf("%s:%d: key: %v", path, n, err)
		}
		p, err1 := strconv.ParseUint(fs[1], 10, 16)
		c, err2 := strconv.ParseUint(fs[2], 10, 64)
		s, err3 := strconv.ParseUint(fs[3], 10, 8)
		i, err4 := strconv.ParseUint(isn, 10, 32)
		for _, err := range []error{err1, err2, err3, err4} {
			if err != nil {
				t.Fatalf("%s:%d: %v", path, n, err)
			}
		}
		v.port, v.counter, v.slot, v.isn = uint16(p), c, uint8(s), uint32(i)
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVectors(t *testing.T) {
	vs := readVectors(t, "isn-v1.txt", false)
	if len(vs) != 5 {
		t.Fatalf("read %d vectors from isn-v1.txt, want 5", len(vs))
	}
	vs = append(vs, readVectors(t, "isn-v1-extra.txt", true)...)
	for _, v := range vs {
		got, err := ISN(v.key, v.realm, v.port, v.counter, v.slot)
		if err != nil {
			t.Fatalf("%s:%d: %v", v.file, v.line, err)
		}
		if got != v.isn {
			t.Errorf("%s:%d: ISN = %d (%#08x), want %d", v.file, v.line, got, got, v.isn)
		}
	}
}

func TestDeriverReuse(t *testing.T) {
	key := make([]byte, 32)
	d, err := NewDeriver(key, "realm")
	if err != nil {
		t.Fatal(err)
	}
	// Interleaving calls must not leak state between them.
	a := d.ISN(22, 5, 0)
	_ = d.ISN(443, 9, 3)
	_ = d.SourcePort(22, 5, 0)
	if b := d.ISN(22, 5, 0); a != b {
		t.Fatalf("second derivation %d != first %d", b, a)
	}
	one, _ := ISN(key, "realm", 22, 5, 0)
	if a != one {
		t.Fatalf("Deriver %d != ISN %d", a, one)
	}
}

// TestDeriverHMAC: the Deriver's MAC is crypto/hmac's HMAC-SHA256 of the
// ISN-v1 message, for every key length, after SetKey to another key and
// back, and a refused SetKey changes nothing.
func TestDeriverHMAC(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var keys [][]byte
	for n := MinKeyLen; n <= MaxKeyLen; n++ {
		k := make([]byte, n)
		for i := range k {
			k[i] = byte(r.Uint32())
		}
		keys = append(keys, k)
	}
	want := func(key []byte, realm string, port uint16, counter uint64, slot uint8) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(Domain))
		m.Write([]byte{byte(len(realm))})
		m.Write([]byte(realm))
		m.Write(binary.BigEndian.AppendUint16(nil, port))
		m.Write(binary.BigEndian.AppendUint64(nil, counter))
		m.Write([]byte{slot})
		return m.Sum(nil)
	}
	for _, realm := range []string{"", "lab", strings.Repeat("r", MaxRealmLen)} {
		d, err := NewDeriver(keys[0], realm)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, len(keys) - 1, 0, 7, 7, 3} {
			if err := d.SetKey(keys[i]); err != nil {
				t.Fatal(err)
			}
			if d.SetKey(make([]byte, MaxKeyLen+1)) == nil || d.SetKey(nil) == nil {
				t.Fatal("SetKey took a key of a bad length")
			}
			for j := 0; j < 20; j++ {
				port, counter, slot := uint16(r.Uint32()), r.Uint64(), uint8(r.Uint32())
				got := d.mac6(port, counter, slot)
				if w := want(keys[i], realm, port, counter, slot); string(got) != string(w) {
					t.Fatalf("key of %d bytes, realm %q: MAC %x, crypto/hmac %x", len(keys[i]), realm, got, w)
				}
			}
		}
	}
}

func TestSourcePortRange(t *testing.T) {
	d, _ := NewDeriver(make([]byte, 16), "")
	for c := uint64(0); c < 2000; c++ {
		p := d.SourcePort(22, c, 0)
		if p < 1024 {
			t.Fatalf("counter %d: source port %d below 1024", c, p)
		}
	}
}

func TestKeyAndRealmLimits(t *testing.T) {
	for _, n := range []int{0, 15, 65, 100} {
		if _, err := NewDeriver(make([]byte, n), ""); err == nil {
			t.Errorf("key of %d bytes accepted", n)
		}
	}
	for _, n := range []int{16, 32, 64} {
		if _, err := NewDeriver(make([]byte, n), ""); err != nil {
			t.Errorf("key of %d bytes: %v", n, err)
		}
	}
	if _, err := NewDeriver(make([]byte, 16), strings.Repeat("x", 256)); err == nil {
		t.Error("realm of 256 bytes accepted")
	}
	if _, err := NewDeriver(make([]byte, 16), strings.Repeat("x", 255)); err != nil {
		t.Errorf("realm of 255 bytes: %v", err)
	}
}

func TestCounter(t *testing.T) {
	p := 30 * time.Second
	for _, tc := range []struct {
		unix int64
		want uint64
	}{
		{0, 0}, {29, 0}, {30, 1}, {59, 1}, {60, 2},
		{1740000000, 58000000}, {-5, 0},
	} {
		if got := Counter(time.Unix(tc.unix, 0), p); got != tc.want {
			t.Errorf("Counter(%d) = %d, want %d", tc.unix, got, tc.want)
		}
	}
	// Sub-second parts never round up.
	if got := Counter(time.Unix(29, 999999999), p); got != 0 {
		t.Errorf("Counter(29.999999999) = %d, want 0", got)
	}
}

func TestValidatePeriod(t *testing.T) {
	for _, p := range []time.Duration{0, 500 * time.Millisecond, 1500 * time.Millisecond, -time.Second} {
		if ValidatePeriod(p) == nil {
			t.Errorf("period %v accepted", p)
		}
	}
	for _, p := range []time.Duration{time.Second, 2 * time.Second, 30 * time.Second} {
		if err := ValidatePeriod(p); err != nil {
			t.Errorf("period %v: %v", p, err)
		}
	}
}

func TestWindow(t *testing.T) {
	p := 30 * time.Second
	at := time.Unix(100*30+7, 0) // counter 100
	w := Window(at, p, 1, 0)
	want := []Entry{
		{99, time.Unix(101*30, 0)},
		{100, time.Unix(102*30, 0)},
		{101, time.Unix(103*30, 0)},
	}
	if len(w) != len(want) {
		t.Fatalf("Window = %v, want %v", w, want)
	}
	for i := range w {
		if w[i].Counter != want[i].Counter || !w[i].Expires.Equal(want[i].Expires) {
			t.Errorf("entry %d = %v, want %v", i, w[i], want[i])
		}
	}
	if got := Window(at, p, 1, 2); len(got) != 5 || got[4].Counter != 103 {
		t.Errorf("lookahead 2: %v", got)
	}
	if got := Window(time.Unix(5, 0), p, 2, 0); len(got) != 3 || got[0].Counter != 0 {
		t.Errorf("near epoch: %v", got)
	}
}

// validAt reports whether counter c is in the window at t.
func validAt(c uint64, t time.Time, p time.Duration, tol int) bool {
	for _, e := range Window(t, p, tol, 0) {
		if e.Counter == c {
			return true
		}
	}
	return false
}

// TestWindowEdges checks that a counter is valid exactly until its expiry:
// in the window one nanosecond before, out of it at the expiry instant, and
// that the expiry the window reports is that instant.
func TestWindowEdges(t *testing.T) {
	p := 2 * time.Second
	for tol := 0; tol <= 3; tol++ {
		c := uint64(1000)
		exp := Window(Start(c, p), p, tol, 0)
		var e Entry
		for _, x := range exp {
			if x.Counter == c {
				e = x
			}
		}
		if e.Expires.IsZero() {
			t.Fatalf("tol %d: counter %d not in its own window", tol, c)
		}
		if !validAt(c, e.Expires.Add(-time.Nanosecond), p, tol) {
			t.Errorf("tol %d: counter invalid just before its expiry %v", tol, e.Expires)
		}
		if validAt(c, e.Expires, p, tol) {
			t.Errorf("tol %d: counter still valid at its expiry %v", tol, e.Expires)
		}
		// First valid instant: tol periods before the counter starts.
		first := Start(c-uint64(tol), p)
		if !validAt(c, first, p, tol) || validAt(c, first.Add(-time.Nanosecond), p, tol) {
			t.Errorf("tol %d: counter's window does not start at %v", tol, first)
		}
	}
}

func TestNextBoundary(t *testing.T) {
	p := 30 * time.Second
	if got := NextBoundary(time.Unix(60, 0), p); !got.Equal(time.Unix(90, 0)) {
		t.Errorf("at a boundary: %v", got)
	}
	if got := NextBoundary(time.Unix(89, 999), p); !got.Equal(time.Unix(90, 0)) {
		t.Errorf("just before: %v", got)
	}
}

func TestISNNeverZero(t *testing.T) {
	// A MAC that starts with four zero bytes (a 1 in 2^32 event no search
	// finds) gives ISN 1; the kernel would read 0 as "no ISN set".
	zero := make([]byte, 32)
	if got := isnFromMAC(zero); got != 1 {
		t.Fatalf("isnFromMAC(0...) = %d, want 1", got)
	}
	zero[3] = 2
	if got := isnFromMAC(zero); got != 2 {
		t.Fatalf("isnFromMAC(0,0,0,2...) = %d, want 2", got)
	}
	d, _ := NewDeriver(make([]byte, 16), "")
	for c := uint64(0); c < 10000; c++ {
		if d.ISN(22, c, 0) == 0 {
			t.Fatalf("counter %d: ISN 0", c)
		}
	}
}

func FuzzISN(f *testing.F) {
	f.Add(make([]byte, 16), "", uint16(22), uint64(0), uint8(0))
	f.Add(make([]byte, 64), "realm", uint16(65535), ^uint64(0), uint8(255))
	f.Fuzz(func(t *testing.T, key []byte, realm string, port uint16, counter uint64, slot uint8) {
		d, err := NewDeriver(key, realm)
		if err != nil {
			if ValidateKey(key) == nil && ValidateRealm(realm) == nil {
				t.Fatalf("valid input refused: %v", err)
			}
			return
		}
		a := d.ISN(port, counter, slot)
		if a == 0 {
			t.Fatal("ISN 0")
		}
		if b, _ := ISN(key, realm, port, counter, slot); a != b {
			t.Fatalf("Deriver %d != ISN %d", a, b)
		}
		if sp := d.SourcePort(port, counter, slot); sp < 1024 {
			t.Fatalf("source port %d", sp)
		}
	})
}

// ISN is a one-shot form of Deriver.ISN: a fresh HMAC per value, the
// reference the Deriver's reuse is checked and benchmarked against.
func ISN(key []byte, realm string, port uint16, counter uint64, slot uint8) (uint32, error) {
	d, err := NewDeriver(key, realm)
	if err != nil {
		return 0, err
	}
	return d.ISN(port, counter, slot), nil
}

// TestSourcePortVectors checks SourcePort and Knock against the ISN-v1
// vectors, the source ports computed by an independent implementation
// (Python's hmac over the same message, 1024 + u16be(mac[4:6]) mod 64512).
func TestSourcePortVectors(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	d, err := NewDeriver(key, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		port    uint16
		counter uint64
		slot    uint8
		isn     uint32
		sport   uint16
	}{
		{22, 0, 0, 2742790613, 48714},
		{22, 1, 0, 185541829, 13039},
		{22, 58000000, 3, 3644611392, 38502},
		{443, 58000000, 0, 4170546255, 58148},
	} {
		if sp := d.SourcePort(v.port, v.counter, v.slot); sp != v.sport {
			t.Errorf("SourcePort(%d, %d, %d) = %d, want %d", v.port, v.counter, v.slot, sp, v.sport)
		}
		if isn, sp := d.Knock(v.port, v.counter, v.slot); isn != v.isn || sp != v.sport {
			t.Errorf("Knock(%d, %d, %d) = %d, %d; want %d, %d", v.port, v.counter, v.slot, isn, sp, v.isn, v.sport)
		}
	}
}
