//go:build linux

package tcpsign

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Result is what Sign did with one listener.
type Result struct {
	Listener Listener
	// PID is the process whose descriptor was used (0 when none was).
	PID int
	// Signed: the listener now signs with the key (it did already, or
	// Sign put the key on it).
	Signed bool
	// Changed: Sign put the key on it in this call.
	Changed bool
	// Err says why the listener is not signed.
	Err error
}

// ErrNotRoot is wrapped by a Result's Err for a listener that Sign leaves
// alone because root did not create it or a process not running as root
// holds it.
var ErrNotRoot = errors.New("not a root service's listener")

// Proc is the proc file system Sign reads; a test may point it elsewhere.
var Proc = "/proc"

// Sign puts key, for every peer, on each listening socket of port in
// netns that does not sign with it yet. Only a listener that root created
// (socket uid 0) and that a process whose real, effective and saved uids
// are all 0 holds is touched: a port where an unprivileged user listens
// is left alone (a config naming it must not make seqknockd reach into
// that user's process). The socket is duplicated from that process with
// pidfd_open and pidfd_getfd, checked to be the same socket (its inode),
// keyed and closed at once. The error is for sock_diag failing; what
// happened to each listener is in its Result.
func Sign(netns int, port uint16, key []byte) ([]Result, error) {
	ls, err := Listeners(netns, port)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(ls))
	for _, l := range ls {
		r := Result{Listener: l}
		switch {
		case l.SignedWith(key):
			r.Signed = true
		case l.UID != 0:
			r.Err = fmt.Errorf("%w: the socket belongs to uid %d", ErrNotRoot, l.UID)
		default:
			r.PID, r.Err = signListener(l, key)
			r.Signed, r.Changed = r.Err == nil, r.Err == nil
		}
		out = append(out, r)
	}
	return out, nil
}

// signListener finds a root process holding l, duplicates the socket from
// it and sets the key.
func signListener(l Listener, key []byte) (int, error) {
	dup, pid, err := Duplicate(l.Inode, true)
	if err != nil {
		return pid, err
	}
	defer unix.Close(dup)
	return pid, SetListenerKey(dup, key)
}

// ErrNoHolder is wrapped by Duplicate's error when no process this one
// can see holds the socket: it belongs to a process in another PID
// namespace (a container), or its holder closed it meanwhile.
var ErrNoHolder = errors.New("no process in this PID namespace holds the socket")

// ErrNoAccess is wrapped by Duplicate's error when pidfd_getfd is refused:
// the caller lacks CAP_SYS_PTRACE over the holder (or a security module
// forbids it).
var ErrNoAccess = errors.New("no pidfd access to the process that holds the socket")

// Duplicate finds a process that holds the listening TCP socket with
// inode and duplicates the socket from it into this process (pidfd_open,
// pidfd_getfd), checked to be that socket, still listening. The caller
// closes fd. With rootOnly, only a process whose uids are all 0 may be
// the holder, and a holder of another user makes it refused (ErrNotRoot).
// pid is the holder's, once found.
func Duplicate(inode uint32, rootOnly bool) (fd, pid int, err error) {
	pid, n, err := findHolder(inode, rootOnly)
	if err != nil {
		return -1, 0, err
	}
	fd, err = grab(pid, n, inode)
	return fd, pid, err
}

// findHolder returns a process, and its descriptor, that holds the socket
// with inode; with rootOnly, among the processes whose uids are all 0,
// and a process of another user holding the same socket makes it refused.
func findHolder(inode uint32, rootOnly bool) (pid, fd int, err error) {
	target := fmt.Sprintf("socket:[%d]", inode)
	dirs, err := os.ReadDir(Proc)
	if err != nil {
		return 0, 0, fmt.Errorf("find the listener's process: %w", err)
	}
	found := false
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil || p == os.Getpid() {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(Proc, d.Name(), "fd"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		for _, f := range fds {
			link, err := os.Readlink(filepath.Join(Proc, d.Name(), "fd", f.Name()))
			if err != nil || link != target {
				continue
			}
			n, err := strconv.Atoi(f.Name())
			if err != nil {
				continue
			}
			if !rootOnly {
				return p, n, nil
			}
			root, err := allRoot(p)
			if err != nil {
				continue // gone meanwhile
			}
			if !root {
				return 0, 0, fmt.Errorf("%w: process %d, which holds it, does not run as root", ErrNotRoot, p)
			}
			if !found {
				pid, fd, found = p, n, true
			}
		}
	}
	if !found {
		return 0, 0, fmt.Errorf("socket inode %d: %w", inode, ErrNoHolder)
	}
	return pid, fd, nil
}

// allRoot reports whether the real, effective, saved and file-system uids
// of pid are all 0.
func allRoot(pid int) (bool, error) {
	f, err := os.Open(filepath.Join(Proc, strconv.Itoa(pid), "status"))
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "Uid:"); ok {
			ids := strings.Fields(rest)
			if len(ids) != 4 {
				return false, fmt.Errorf("%s/%d/status: Uid line %q", Proc, pid, rest)
			}
			for _, id := range ids {
				if id != "0" {
					return false, nil
				}
			}
			return true, nil
		}
	}
	return false, fmt.Errorf("%s/%d/status: no Uid line", Proc, pid)
}

// grab duplicates descriptor fd of process pid into this process
// (close-on-exec) and checks that it is the TCP listening socket with
// inode: between reading /proc and pidfd_getfd, the process may have
// closed the descriptor and opened something else under its number, or
// exited and its PID been reused.
func grab(pid, fd int, inode uint32) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return -1, fmt.Errorf("pidfd_getfd %d fd %d: %w: %w (seqknockd needs CAP_SYS_PTRACE to take the listener from the service)", pid, fd, ErrNoAccess, err)
		}
		return -1, fmt.Errorf("pidfd_getfd %d fd %d: %w", pid, fd, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(dup, &st)
	if err == nil && (st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Ino != uint64(inode)) {
		err = fmt.Errorf("process %d fd %d is no longer socket inode %d", pid, fd, inode)
	}
	if err == nil {
		var listening int
		if listening, err = unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && listening != 1 {
			err = fmt.Errorf("process %d fd %d is not listening", pid, fd)
		}
	}
	if err != nil {
		unix.Close(dup)
		return -1, fmt.Errorf("take listener: %w", err)
	}
	return dup, nil
}
