package keyfile

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateWriteLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	key := Generate()
	if len(key) != GenerateSize {
		t.Fatalf("generated %d bytes", len(key))
	}
	if err := Write(path, key, false); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o, want 0600", fi.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, key) {
		t.Fatal("loaded key differs from written key")
	}
	k2 := Generate()
	if bytes.Equal(k2, key) {
		t.Fatal("two generated keys are equal")
	}
	err = Write(path, k2, false)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("overwrite without force: %v", err)
	}
	if got, _ := Load(path); !bytes.Equal(got, key) {
		t.Fatal("refused overwrite changed the file")
	}
	// A forced write replaces the key and repairs a loose mode.
	os.Chmod(path, 0o644)
	if err := Write(path, k2, true); err != nil {
		t.Fatal(err)
	}
	if got, err := Load(path); err != nil || !bytes.Equal(got, k2) {
		t.Fatalf("after force: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
	}{
		{"group-readable", secret + "\n", 0o640, "chmod 600"},
		{"world-readable", secret + "\n", 0o604, "readable by group or others"},
		{"bad-base64", "not*base64!\n", 0o600, "not valid standard base64"},
		{"url-base64", strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))) + "\n", 0o600, "not valid standard base64"},
		{"too-short", base64.StdEncoding.EncodeToString(make([]byte, 15)) + "\n", 0o600, "key is 15 bytes, want 16 to 64"},
		{"too-long", base64.StdEncoding.EncodeToString(make([]byte, 65)) + "\n", 0o600, "key is 65 bytes"},
		{"two-lines", secret + "\n" + secret + "\n", 0o600, "several lines"},
		{"empty", "", 0o600, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tc.mode)
			_, err := Load(path)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name the file", msg)
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, secret[:8]) {
				t.Errorf("error %q shows key material", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
	if err := Write(filepath.Join(dir, "x"), nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, "x")); err == nil || !errors.Is(err, err) {
		t.Error("empty key accepted")
	}
}

func TestEncodeParseRoundTrip(t *testing.T) {
	for _, n := range []int{16, 32, 64} {
		k := bytes.Repeat([]byte{0xa5}, n)
		got, err := Parse("mem", Encode(k))
		if err != nil || !bytes.Equal(got, k) {
			t.Fatalf("%d bytes: %v", n, err)
		}
	}
	// CRLF line ends, as an editor on another system may write, are fine.
	if _, err := Parse("mem", []byte(base64.StdEncoding.EncodeToString(make([]byte, 16))+"\r\n")); err != nil {
		t.Fatal(err)
	}
}

// TestWriteAndLoadRefuseWhatTheyShould: a directory is no key file, a
// missing directory is reported, a forced write fixes a loose mode, and a
// file too large for a key is refused before it is parsed.
func TestWriteAndLoadRefuseWhatTheyShould(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	k := bytes.Repeat([]byte{7}, 32)
	for _, force := range []bool{false, true} {
		if err := Write(filepath.Join(dir, "no", "such", "dir"), k, force); err == nil || !strings.HasPrefix(err.Error(), "write key: ") {
			t.Errorf("force=%v into a missing directory: %v", force, err)
		}
	}
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("x\n"), 0o644)
	os.Chmod(loose, 0o644)
	if err := Write(loose, k, true); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(loose); fi.Mode().Perm() != 0o600 {
		t.Errorf("forced write left mode %o", fi.Mode().Perm())
	}
	if _, err := os.Stat(loose + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, bytes.Repeat([]byte("A"), 1<<20), 0o600)
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "too large for a key file") {
		t.Errorf("large file: %v", err)
	}
	if k1 := Generate(); len(k1) != GenerateSize {
		t.Errorf("generate: %d bytes", len(k1))
	} else if k2 := Generate(); bytes.Equal(k1, k2) {
		t.Error("two generated keys are equal")
	}
}

// TestWriteFailureKeepsOldKey: a write that fails (a full disk, say) is an
// error, and a forced replacement leaves the old key in place, not a
// truncated file; a new file that could not be written is removed.
func TestWriteFailureKeepsOldKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	old := Generate()
	if err := Write(path, old, false); err != nil {
		t.Fatal(err)
	}
	defer func(w func(*os.File, []byte) (int, error)) { writeData = w }(writeData)
	writeData = func(f *os.File, b []byte) (int, error) {
		n, _ := f.Write(b[:5])
		return n, errors.New("no space left on device")
	}
	k2 := Generate()
	if err := Write(path, k2, true); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("forced write: error %v, want the write's", err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("old key after a failed forced write: %v", err)
	}
	if !bytes.Equal(got, old) {
		t.Error("a failed forced write replaced the old key")
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temp file left behind: %v", err)
	}
	fresh := filepath.Join(dir, "fresh")
	if err := Write(fresh, k2, false); err == nil {
		t.Error("new file: a failed write was not an error")
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("new file left behind after a failed write: %v", err)
	}
}
