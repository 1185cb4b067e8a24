//go:build linux

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultRuntimeDir is where `seqknockd run` keeps the lock that makes it
// the only daemon of its table in its network namespace
// (RuntimeDirectory= of the systemd unit).
const DefaultRuntimeDir = "/run/seqknock"

// ErrAlreadyRunning is wrapped by LockTable's error when another daemon
// holds the lock.
var ErrAlreadyRunning = errors.New("already running")

// NetNSInode returns the inode of the calling thread's network
// namespace: the identity of the namespace on the host.
func NetNSInode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("network namespace: %w", err)
	}
	return st.Ino, nil
}

// LockTable makes the caller the only `seqknockd run` of table in its
// network namespace, until release is called or the process ends (the
// kernel drops the lock then: no stale lock survives a crash). The lock is
// an open file description lock (F_OFD_SETLK) on dir/run.TABLE.net-INODE.lock,
// INODE being the namespace's (NetNSInode), which holds the holder's pid.
// dir is created 0700 if missing, and must be owned by root or the
// caller, and writable by no one else, so no other user can take or hold
// the lock; the file is opened without following a symlink. A lock held
// by another daemon is one line naming its pid, wrapping
// ErrAlreadyRunning.
func LockTable(dir, table string) (release func(), err error) {
	ino, err := NetNSInode()
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	var dst unix.Stat_t
	if err := unix.Lstat(dir, &dst); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	uid := os.Geteuid()
	switch {
	case dst.Mode&unix.S_IFMT != unix.S_IFDIR:
		return nil, fmt.Errorf("lock: %s: not a directory", dir)
	case dst.Uid != 0 && int(dst.Uid) != uid:
		return nil, fmt.Errorf("lock: %s: owned by uid %d, not root or uid %d; run: chown root %s", dir, dst.Uid, uid, dir)
	case dst.Mode&0o022 != 0:
		return nil, fmt.Errorf("lock: %s: writable by group or others (mode %04o); run: chmod 700 %s", dir, dst.Mode&0o7777, dir)
	}
	path := filepath.Join(dir, fmt.Sprintf("run.%s.net-%d.lock", table, ino))
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || (st.Uid != 0 && int(st.Uid) != uid) {
		f.Close()
		return nil, fmt.Errorf("lock: %s: not a regular file of root's or uid %d; remove it", path, uid)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("seqknockd run is %w for table inet %s in this network namespace (pid %s, lock %s); stop it first", ErrAlreadyRunning, table, holder(f), path)
		}
		return nil, fmt.Errorf("lock: %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}

// holder reads the pid the lock's holder wrote in f.
func holder(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid := strings.TrimSpace(string(b[:n]))
	if _, err := strconv.Atoi(pid); err != nil {
		return "unknown: it has not written it yet"
	}
	return pid
}
