package keyfile

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/seqknock/seqknock/totp"
)

// GenerateSize is the length in bytes of a generated key.
const GenerateSize = 32

// maxFileSize bounds how much of a key file is read: a 64-byte key is 88
// base64 characters, so anything much larger is not a key file.
const maxFileSize = 4096

// ErrUnsafeMode is wrapped by Load's error for a file that group or others
// can read or write.
var ErrUnsafeMode = errors.New("readable by group or others")

// Generate returns a new random key of GenerateSize bytes (crypto/rand
// never fails: it ends the program first).
func Generate() []byte {
	k := make([]byte, GenerateSize)
	rand.Read(k)
	return k
}

// Encode returns the key file text for key: one base64 line.
func Encode(key []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(key) + "\n")
}

// Write creates path with mode 0600 holding key. It refuses to replace an
// existing file unless force is set; a forced write replaces the file
// atomically, so a reader never sees half a key.
func Write(path string, key []byte, force bool) error {
	data := Encode(key)
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("write key: %s exists; use --force to replace it", path)
			}
			return fmt.Errorf("write key: %w", err)
		}
		if err := writeSynced(f, data); err != nil {
			os.Remove(path)
			return fmt.Errorf("write key: %s: %w", path, err)
		}
		return nil
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	// O_CREATE keeps the mode of a file that already existed.
	if err = f.Chmod(0o600); err == nil {
		err = writeSynced(f, data)
	} else {
		f.Close()
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write key: %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write key: %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeSynced writes data to f, flushes it to the disk and closes f: only
// a whole, durable key is kept (or renamed over the old one).
func writeSynced(f *os.File, data []byte) error {
	_, err := writeData(f, data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeData is f.Write; tests make it fail.
var writeData = (*os.File).Write

// syncDir flushes dir, so the rename is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write key: sync %s: %w", dir, err)
	}
	return nil
}

// Load reads the key in path. It fails, naming the file and never the key,
// if the file is not a regular file (it is opened without blocking, so a
// FIFO does not hang the caller), is readable by group or others, is not
// one line of standard base64, or holds a key of the wrong length.
func Load(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	defer f.Close()
	return LoadFrom(f, path)
}

// LoadFrom is Load of the file f, already open; name is used in errors
// only. The caller closes f.
func LoadFrom(f *os.File, name string) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load key: %s: not a regular file", name)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load key: %s: %w (mode %04o); run: chmod 600 %s", name, ErrUnsafeMode, perm, name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load key: %s: %w", name, err)
	}
	return Parse(name, data)
}

// Parse decodes key file text; name is used in errors only.
func Parse(name string, data []byte) ([]byte, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("load key: %s: too large for a key file", name)
	}
	line := bytes.TrimRight(data, "\r\n")
	if bytes.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("load key: %s: want one line of base64, found several lines", name)
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, fmt.Errorf("load key: %s: empty", name)
	}
	key := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
	n, err := base64.StdEncoding.Strict().Decode(key, line)
	if err != nil {
		// The base64 error shows the offset of the bad byte, not the byte.
		return nil, fmt.Errorf("load key: %s: not valid standard base64", name)
	}
	key = key[:n]
	if err := totp.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("load key: %s: %w", name, err)
	}
	return key, nil
}
