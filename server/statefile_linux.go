//go:build linux

package server

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/seqknock/seqknock/internal/strictfile"
	"golang.org/x/sys/unix"
)

// daemonUID is the user who, besides root, may own the directories the
// state and runtime directories are walked through: the daemon's. A seam
// for tests.
var daemonUID = os.Geteuid

// openStateDir opens the state directory dir (strictfile.OpenDir: every
// directory above it walked from / without following a symlink, each owned
// by root or the daemon's user and writable by no one else unless sticky;
// with create, missing ones made mode 0700), and checks that it is a
// directory of root's or the daemon's user, mode 0700. The state file is
// then read, written, renamed and removed relative to the descriptor
// returned, so a directory swapped for another after the check is never
// used.
func openStateDir(dir string, create bool) (*os.File, error) {
	uid := daemonUID()
	f, err := strictfile.OpenDir(dir, uid, create, func(st *unix.Stat_t) error {
		switch {
		case st.Uid != 0 && int(st.Uid) != uid:
			return fmt.Errorf("state directory %s is owned by uid %d, not root: chown root: %s", dir, st.Uid, dir)
		case st.Mode&0o077 != 0:
			return fmt.Errorf("state directory %s is mode %#o, open to group or others: chmod 0700 %s", dir, st.Mode&0o7777, dir)
		}
		return nil
	})
	if errors.Is(err, strictfile.ErrRefused) || errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("state directory %w", err)
	}
	return f, err
}

// openFileAt opens the file name in the directory dir for reading,
// without following a symlink or blocking.
func openFileAt(dir *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir.Name(), name)), nil
}

// writeAtomic replaces the file name in the directory dir with data, mode
// 0600: a temporary file made beside it, written, fsynced and closed,
// renamed over name, then the directory fsynced; each error is checked and
// the temporary file removed on failure. Every step is relative to dir.
func writeAtomic(dir *os.File, name string, data []byte) error {
	dfd := int(dir.Fd())
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := ".state-" + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: filepath.Join(dir.Name(), tmp), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), tmp))
	renamed := false
	defer func() {
		if !renamed {
			unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: filepath.Join(dir.Name(), name), Err: err}
	}
	renamed = true
	return dir.Sync()
}

// removeState removes the state file path relative to its directory,
// walked as openStateDir walks it. The directory's own mode is not held
// against it (the save that failed may have failed on it): removing a
// stale state only makes the next start fail closed.
func removeState(path string) error {
	dir, err := strictfile.OpenDir(filepath.Dir(path), daemonUID(), false, func(*unix.Stat_t) error { return nil })
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := unix.Unlinkat(int(dir.Fd()), filepath.Base(path), 0); err != nil {
		return &os.PathError{Op: "remove", Path: path, Err: err}
	}
	return dir.Sync()
}

// NetNSName names the network namespace the calling thread is in, for the
// default state file: "" for the host's (PID 1's), the name `ip netns`
// gave it where /run/netns has one, else "net" and its inode number.
func NetNSName() (string, error) {
	var self, init unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &self); err != nil {
		return "", fmt.Errorf("network namespace: %w", err)
	}
	if err := unix.Stat("/proc/1/ns/net", &init); err == nil && init.Dev == self.Dev && init.Ino == self.Ino {
		return "", nil
	}
	if names, err := filepath.Glob("/run/netns/*"); err == nil {
		for _, n := range names {
			var st unix.Stat_t
			if unix.Stat(n, &st) == nil && st.Dev == self.Dev && st.Ino == self.Ino {
				return filepath.Base(n), nil
			}
		}
	}
	return "net" + strconv.FormatUint(self.Ino, 10), nil
}

// StatePath is the state file to use: path when set, else the default one
// for table and the calling thread's network namespace in dir
// (DefaultStateDir when ""). Its directory is made to pass CheckStateDir.
func StatePath(path, dir, table string) (string, error) {
	if path == "" {
		ns, err := NetNSName()
		if err != nil {
			return "", err
		}
		path = filepath.Join(cmp.Or(dir, DefaultStateDir), StateFileName(table, ns))
	}
	return path, CheckStateDir(path)
}
