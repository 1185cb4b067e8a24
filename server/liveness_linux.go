//go:build linux

package server

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/seqknock/seqknock/internal/strictfile"
	"golang.org/x/sys/unix"
)

// ProbeDaemon tells whether a `seqknockd run` keeps table in force in the
// calling thread's network namespace: whether someone holds the lock
// LockTable takes in dir. The kernel drops that lock when its holder dies
// (kill -9 too), so neither a stale file nor a reused pid can fake a live
// daemon. The pid is the one the holder wrote in the lock file; the rest
// comes from its info file (InfoPath) when that names the same pid.
func ProbeDaemon(dir, table string, now time.Time) (DaemonState, *DaemonInfo, error) {
	path, err := daemonFile(dir, table, "lock")
	if err != nil {
		return DaemonState{}, nil, fmt.Errorf("daemon: %w", err)
	}
	// Only root (or the caller) can make a lock here that counts: in a
	// directory someone else may write or rename, anyone could hold a lock
	// and pose as the daemon. The directory is walked and checked as
	// LockTable's, and the lock and info files opened relative to it.
	d, err := strictfile.OpenDir(dir, daemonUID(), false, func(st *unix.Stat_t) error {
		return trustedDaemonFile(dir, st, unix.S_IFDIR)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return DaemonState{}, nil, nil
	} else if errors.Is(err, strictfile.ErrRefused) {
		return DaemonState{}, nil, fmt.Errorf("daemon: %w; cannot tell whether seqknockd runs", err)
	} else if err != nil {
		return DaemonState{}, nil, err
	}
	defer d.Close()
	fd, err := unix.Openat(int(d.Fd()), filepath.Base(path), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return DaemonState{}, nil, nil
	}
	if err != nil {
		return DaemonState{}, nil, fmt.Errorf("daemon: open %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return DaemonState{}, nil, fmt.Errorf("daemon: %s: %w", path, err)
	}
	if err := trustedDaemonFile(path, &st, unix.S_IFREG); err != nil {
		return DaemonState{}, nil, err
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		return DaemonState{}, nil, fmt.Errorf("daemon: lock of %s: %w", path, err)
	}
	if lk.Type == unix.F_UNLCK {
		return DaemonState{}, nil, nil
	}
	b := make([]byte, 32)
	n, _ := unix.Pread(fd, b, 0)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:max(n, 0)])))
	var info *DaemonInfo
	if ip, err := InfoPath(dir, table); err == nil {
		info, _ = readInfoAt(d, filepath.Base(ip)) // without it, status still knows the daemon lives
	}
	return daemonState(true, pid, info, now), info, nil
}

// trustedDaemonFile checks that the runtime directory or lock file at path,
// with st, is of type typ, owned by root or the caller, and writable by no
// one else.
func trustedDaemonFile(path string, st *unix.Stat_t, typ uint32) error {
	uid := daemonUID()
	switch {
	case st.Mode&unix.S_IFMT != typ:
		return fmt.Errorf("daemon: %s: not a %s; cannot tell whether seqknockd runs", path, map[uint32]string{unix.S_IFDIR: "directory", unix.S_IFREG: "regular file"}[typ])
	case st.Uid != 0 && int(st.Uid) != uid:
		return fmt.Errorf("daemon: %s: owned by uid %d, not root or uid %d; cannot tell whether seqknockd runs", path, st.Uid, uid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("daemon: %s: writable by group or others (mode %04o); cannot tell whether seqknockd runs", path, st.Mode&0o7777)
	}
	return nil
}
