//go:build linux

package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The open flags of the state file: a symlink or a FIFO planted in its
// place is refused, not followed or waited on.
const (
	syscallNoFollow = unix.O_NOFOLLOW
	syscallNonBlock = unix.O_NONBLOCK
)

func checkStateDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("state directory %s: %w", dir, err)
	}
	euid := uint32(os.Geteuid())
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("state directory %s is not a directory (a symlink?): make it a directory of root's, mode 0700", dir)
	case st.Uid != 0 && st.Uid != euid:
		return fmt.Errorf("state directory %s is owned by uid %d, not root: chown root: %s", dir, st.Uid, dir)
	case st.Mode&0o077 != 0:
		return fmt.Errorf("state directory %s is mode %#o, open to group or others: chmod 0700 %s", dir, st.Mode&0o7777, dir)
	}
	return nil
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
// (DefaultStateDir when "").
func StatePath(path, dir, table string) (string, error) {
	if path != "" {
		return path, nil
	}
	if dir == "" {
		dir = DefaultStateDir
	}
	ns, err := NetNSName()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, StateFileName(table, ns)), nil
}
