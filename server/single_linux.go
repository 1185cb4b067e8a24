//go:build linux

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/seqknock/seqknock/internal/strictfile"
	"golang.org/x/sys/unix"
)

// DefaultRuntimeDir is where `seqknockd run` keeps the lock that makes it
// the only daemon of its table in its network namespace
// (RuntimeDirectory= of the systemd unit).
const DefaultRuntimeDir = "/run/seqknock"

// ErrAlreadyRunning is wrapped by LockTable's error when another daemon
// holds the lock.
var ErrAlreadyRunning = errors.New("already running")

// daemonFile is dir/run.TABLE.net-INODE.EXT, INODE the inode of the
// calling thread's network namespace (its identity on the host).
func daemonFile(dir, table, ext string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return "", fmt.Errorf("network namespace: %w", err)
	}
	return filepath.Join(dir, fmt.Sprintf("run.%s.net-%d.%s", table, st.Ino, ext)), nil
}

// LockTable makes the caller the only `seqknockd run` of table in its
// network namespace until release is called or the process ends (the
// kernel drops the lock: no stale lock survives a crash): an F_OFD_SETLK
// lock on the file daemonFile names, which holds the holder's pid, opened
// without following a symlink in dir as openRuntimeDir checks it (created
// 0700 if missing), so no other user can take or hold it. A lock held by
// another daemon is one line naming its pid, wrapping ErrAlreadyRunning.
func LockTable(dir, table string) (release func(), err error) {
	path, err := daemonFile(dir, table, "lock")
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	d, err := openRuntimeDir(dir, true, "lock")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	uid := daemonUID()
	name := filepath.Base(path)
	fd, err := unix.Openat(int(d.Fd()), name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
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

// openRuntimeDir opens the runtime directory dir, which holds the lock and
// the info file, after walking every directory above it as key files are
// walked (strictfile.OpenDir; with create, missing ones made 0700). dir
// itself must be root's or the daemon's user's, not writable by group or
// others. Its files are then used relative to the descriptor returned, so
// a directory swapped after the check is never used. op prefixes errors.
func openRuntimeDir(dir string, create bool, op string) (*os.File, error) {
	uid := daemonUID()
	var bad error // the directory's own check's refusal, already prefixed
	d, err := strictfile.OpenDir(dir, uid, create, func(st *unix.Stat_t) error {
		switch {
		case st.Uid != 0 && int(st.Uid) != uid:
			bad = fmt.Errorf("%s: %s: owned by uid %d, not root or uid %d; run: chown root %s", op, dir, st.Uid, uid, dir)
		case st.Mode&0o022 != 0:
			bad = fmt.Errorf("%s: %s: writable by group or others (mode %04o); run: chmod 700 %s", op, dir, st.Mode&0o7777, dir)
		}
		return bad
	})
	if err != nil && err != bad {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return d, err
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
