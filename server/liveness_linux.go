//go:build linux

package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return DaemonState{}, nil, nil
	}
	if err != nil {
		return DaemonState{}, nil, fmt.Errorf("daemon: open %s: %w", path, err)
	}
	defer unix.Close(fd)
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
		info, _ = ReadInfo(ip) // without it, status still knows the daemon lives
	}
	return daemonState(true, pid, info, now), info, nil
}
