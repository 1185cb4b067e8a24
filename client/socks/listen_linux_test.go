//go:build linux

package socks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestListenUnix: the socket is made with mode 0600 in a directory of mode
// 0700, an old socket is replaced, and a directory open to others, a file
// or a symbolic link at the path are refused.
func TestListenUnix(t *testing.T) {
	base := t.TempDir()
	path := filepath.Join(base, "seqknock", "socks.sock")
	for i := 0; i < 2; i++ { // the second time over the first's socket
		l, err := ListenUnix(path)
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		fi, _ := os.Stat(path)
		di, _ := os.Stat(filepath.Dir(path))
		if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 || di.Mode().Perm() != 0o700 {
			t.Errorf("socket %v, directory %v", fi.Mode(), di.Mode())
		}
		l.Close()
	}
	os.Remove(path)
	os.WriteFile(path, nil, 0o600)
	if _, err := ListenUnix(path); err == nil || !strings.Contains(err.Error(), "other than a socket") {
		t.Errorf("over a file: %v", err)
	}
	os.Remove(path)
	os.Symlink("/tmp", path)
	if _, err := ListenUnix(path); err == nil || !strings.Contains(err.Error(), "other than a socket") {
		t.Errorf("over a symbolic link: %v", err)
	}
	os.Remove(path)
	os.Chmod(filepath.Dir(path), 0o755)
	if _, err := ListenUnix(path); err == nil || !strings.Contains(err.Error(), "group or others") {
		t.Errorf("directory 0755: %v", err)
	}
	link := filepath.Join(base, "linked")
	os.Symlink(filepath.Join(base, "seqknock"), link)
	os.Chmod(filepath.Join(base, "seqknock"), 0o700)
	if _, err := ListenUnix(filepath.Join(link, "socks.sock")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("directory through a symbolic link: %v", err)
	}
}
