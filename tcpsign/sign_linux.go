//go:build linux

package tcpsign

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
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
	fd, h, err := DuplicateVia(inode, rootOnly, Holder{})
	return fd, h.PID, err
}

// Holder is a process and its descriptor of a socket.
type Holder struct{ PID, FD int }

// DuplicateVia is Duplicate that tries the holder last found first (when
// its PID is not 0), which spares the search of every process's
// descriptors in /proc while that process still holds the socket under
// the same number; it returns the holder used. hint is trusted no more
// than the search: the duplicate is checked to be the socket either way.
// With rootOnly, the search is always made (a root process's descriptor
// may since have been passed to another user's).
func DuplicateVia(inode uint32, rootOnly bool, hint Holder) (fd int, h Holder, err error) {
	if hint.PID != 0 && !rootOnly {
		if fd, err := grab(hint.PID, hint.FD, inode); err == nil {
			return fd, hint, nil
		}
	}
	pid, n, err := findHolder(inode, rootOnly)
	if err != nil {
		return -1, Holder{}, err
	}
	fd, err = grab(pid, n, inode)
	return fd, Holder{pid, n}, err
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

// FindHolders looks through /proc once for processes that hold the
// sockets in want (inode: the socket's owner uid, as sock_diag reports
// it) and returns a holder of each it found, stopping once it has them
// all. With owners, it lists the descriptors only of the processes whose
// real uid owns a wanted socket, read from /proc/PID/status first: a root
// service's listener is then looked for among root's processes alone, so
// no other user's descriptors, however many, slow the search. Without,
// it looks in every process (a service that dropped its privileges after
// it listened). The holders are not checked: Take checks each. denied
// says that the descriptors of some process it looked in could not be
// read and the caller lacks CAP_SYS_PTRACE (with it, a process it still
// cannot read, a sandbox's init say, says nothing of the caller's setup).
func FindHolders(want map[uint32]uint32, owners bool) (found map[uint32]Holder, denied bool) {
	found = map[uint32]Holder{}
	if len(want) == 0 {
		return found, false
	}
	uids := map[uint32]bool{}
	for _, uid := range want {
		uids[uid] = true
	}
	dirs, err := os.ReadDir(Proc)
	if err != nil {
		return found, false
	}
	self := os.Getpid()
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil || p == self {
			continue
		}
		if owners {
			if uid, ok := realUID(p); !ok || !uids[uid] {
				continue
			}
		}
		fds, err := os.ReadDir(filepath.Join(Proc, d.Name(), "fd"))
		if err != nil {
			denied = denied || errors.Is(err, fs.ErrPermission)
			continue // gone, a kernel thread, or no access
		}
		for _, f := range fds {
			link, err := os.Readlink(filepath.Join(Proc, d.Name(), "fd", f.Name()))
			if err != nil {
				denied = denied || errors.Is(err, fs.ErrPermission)
				continue
			}
			if !strings.HasPrefix(link, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(link[len("socket:["):], "]"), 10, 32)
			if err != nil {
				continue
			}
			if _, ok := want[uint32(ino)]; !ok {
				continue
			}
			if _, ok := found[uint32(ino)]; ok {
				continue
			}
			if n, err := strconv.Atoi(f.Name()); err == nil {
				found[uint32(ino)] = Holder{p, n}
			}
		}
		if len(found) == len(want) {
			break
		}
	}
	return found, denied && !hasCapSysPtrace()
}

// hasCapSysPtrace reports whether this process has CAP_SYS_PTRACE in its
// effective set.
func hasCapSysPtrace() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_PTRACE/32].Effective&(1<<(unix.CAP_SYS_PTRACE%32)) != 0
}

// realUID reads the real uid of pid from /proc/PID/status.
func realUID(pid int) (uint32, bool) {
	f, err := os.Open(filepath.Join(Proc, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "Uid:"); ok {
			ids := strings.Fields(rest)
			if len(ids) == 0 {
				return 0, false
			}
			uid, err := strconv.ParseUint(ids[0], 10, 32)
			return uint32(uid), err == nil
		}
	}
	return 0, false
}

// Take duplicates the socket with inode from its holder h (pidfd_open,
// pidfd_getfd), checked to be that socket, still listening. The caller
// closes fd.
func Take(h Holder, inode uint32) (fd int, err error) {
	return grab(h.PID, h.FD, inode)
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
