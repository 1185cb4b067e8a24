//go:build linux

package socks

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// DefaultSocketPath is the Unix socket of uid's proxy: socks.sock in
// seqknock/ under runtimeDir ($XDG_RUNTIME_DIR), or under /run/user/UID
// when runtimeDir is "".
func DefaultSocketPath(runtimeDir string, uid int) string {
	return filepath.Join(cmp.Or(runtimeDir, filepath.Join("/run/user", strconv.Itoa(uid))), "seqknock", "socks.sock")
}

// ListenUnix listens on the Unix socket path, mode 0600, in a directory
// of mode 0700 that it makes when missing. An existing directory must be
// this user's and not reachable by group or others; an old socket at path
// is replaced, anything else there is refused.
func ListenUnix(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return nil, fmt.Errorf("listen %s: %s is not a directory", path, dir)
	case st == nil || int(st.Uid) != os.Getuid():
		return nil, fmt.Errorf("listen %s: %s is not this user's", path, dir)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("listen %s: %s may be entered by group or others (mode %04o); run: chmod 700 %s", path, dir, fi.Mode().Perm(), dir)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: something other than a socket is there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: %w", path, err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return l, nil
}
