//go:build linux

package socks

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestLoadPassword: the first line of a private regular file is the
// password; a file others may read, a symbolic link, a FIFO and an empty
// first line are refused.
func TestLoadPassword(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "s3cret\r\nignored\n", 0o600)
	if got, err := LoadPassword(good); err != nil || got != "s3cret" {
		t.Fatalf("LoadPassword(good) = %q, %v", got, err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		write("shared", "s3cret\n", 0o640):  "readable by group or others",
		write("empty", "\nsecond\n", 0o600): "want one line of 1 to 255 bytes",
		link:                                "symlink",
		fifo:                                "not a regular file",
	} {
		if got, err := LoadPassword(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadPassword(%s) = %q, %v; want an error saying %q", filepath.Base(path), got, err, want)
		}
	}
}
