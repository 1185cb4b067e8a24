//go:build linux

package server

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

const testKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"

// loadWithin is LoadConfig that fails t if it takes a second.
func loadWithin(t *testing.T, path string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, err := LoadConfig(path); done <- err }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Second):
		t.Fatalf("LoadConfig(%s) blocked for a second", path)
		return nil
	}
}

// TestLoadConfigRefusesUntrustedFiles: the config, its drop-ins and its
// key files are refused, each in one line naming the file and the fix,
// when they are not regular files (a FIFO key returns at once, it does not
// hang), are symlinks, when others can write the config, or when a real
// unprivileged user owns a key file or a directory above one.
func TestLoadConfigRefusesUntrustedFiles(t *testing.T) {
	u := netnstest.NewUser(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "seqknockd.toml")
	base := minimal[:len(minimal)-len("key_file = \"k\"\n")]
	writeCfg := func(keyFile string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(base+"key_file = \""+keyFile+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := filepath.Join(dir, "a.key")
	if err := os.WriteFile(good, []byte(testKey), 0o600); err != nil {
		t.Fatal(err)
	}
	writeCfg(good)
	if err := loadWithin(t, cfgPath); err != nil {
		t.Fatalf("good config: %v", err)
	}

	fifo := filepath.Join(dir, "fifo.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	owned := filepath.Join(dir, "owned.key")
	if err := os.WriteFile(owned, []byte(testKey), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(owned, u.UID, u.GID)
	inHome := u.WriteFile("keys/b.key", []byte(testKey), 0o600)
	os.Chown(inHome, 0, 0)
	for _, c := range []struct{ name, key, want string }{
		{"FIFO key", fifo, fifo + ": not a regular file"},
		{"symlink key", link, link + ": is a symlink"},
		{"key owned by a user", owned, owned + ": owned by uid " + strconv.Itoa(u.UID) + ", not root or uid 0 (the daemon's user); run: chown root " + owned},
		{"root key in a user's directory", inHome, "directory " + u.Home + " is owned by uid " + strconv.Itoa(u.UID) + ", not root or uid 0; run: chown root " + u.Home},
	} {
		writeCfg(c.key)
		err := loadWithin(t, cfgPath)
		if err == nil || !strings.Contains(err.Error(), cfgPath+":6: user[0].key_file: load key: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want one line naming %q", c.name, err, c.want)
		}
	}

	writeCfg(good)
	os.Chmod(cfgPath, 0o646)
	if err := loadWithin(t, cfgPath); err == nil || !strings.Contains(err.Error(), cfgPath+": writable by others (mode 0646); run: chmod o-w "+cfgPath) {
		t.Errorf("config others can write: %v", err)
	}
	os.Chmod(cfgPath, 0o600)
	fifoCfg := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifoCfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := loadWithin(t, fifoCfg); err == nil || !strings.Contains(err.Error(), fifoCfg+": not a regular file") {
		t.Errorf("FIFO config: %v", err)
	}
	// A drop-in is checked as the config is.
	dropIn := filepath.Join(dir, "more.toml")
	if err := os.WriteFile(dropIn, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dropIn, 0o666)
	if err := os.WriteFile(cfgPath, []byte("include = [\"more.toml\"]\n"+base+"key_file = \""+good+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := loadWithin(t, cfgPath); err == nil || !strings.Contains(err.Error(), dropIn+": writable by others") {
		t.Errorf("drop-in others can write: %v", err)
	}
}
