package totp

import (
	"bufio"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFingerprintVectors: Fingerprint reproduces the vectors made by an
// independent implementation (Python's hashlib), and differs from the
// knocks' own bytes.
func TestFingerprintVectors(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "fingerprint-v1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			t.Fatalf("bad vector line %q", line)
		}
		key, err := base64.StdEncoding.DecodeString(fields[0])
		if err != nil {
			t.Fatal(err)
		}
		if got := Fingerprint(key); got != fields[1] {
			t.Errorf("Fingerprint(%s) = %s, want %s", fields[0], got, fields[1])
		}
		n++
	}
	if n < 4 {
		t.Fatalf("read %d vectors, want at least 4", n)
	}
}
