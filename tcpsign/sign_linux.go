//go:build linux

package tcpsign

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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
	h, err := findHolder(l.Inode)
	if err != nil {
		return 0, err
	}
	dup, err := Take(h, l.Inode)
	if err != nil {
		return h.PID, err
	}
	defer unix.Close(dup)
	return h.PID, SetListenerKey(dup, key)
}

// ErrNoHolder is wrapped by the error of a search for a socket's holder
// when no process this one can see holds the socket: it belongs to a
// process in another PID namespace (a container), or its holder closed it
// meanwhile.
var ErrNoHolder = errors.New("no process in this PID namespace holds the socket")

// ErrNoAccess is wrapped by Take's error when pidfd_getfd is refused: the
// caller lacks CAP_SYS_PTRACE over the holder (or a security module
// forbids it).
var ErrNoAccess = errors.New("no pidfd access to the process that holds the socket")

// Holder is a process and its descriptor of a socket.
type Holder struct{ PID, FD int }

// findHolder returns a process, and its descriptor, that holds the socket
// with inode, among the processes whose uids are all 0; a process of
// another user holding the same socket makes it refused (ErrNotRoot).
func findHolder(inode uint32) (Holder, error) {
	var h Holder
	var refused error
	_, err := eachSocket(nil, func(p, n int, ino uint32) bool {
		if ino != inode {
			return true
		}
		ids, err := statusUIDs(p)
		switch {
		case err != nil || len(ids) != 4: // gone meanwhile
		case slices.ContainsFunc(ids, func(id string) bool { return id != "0" }):
			refused = fmt.Errorf("%w: process %d, which holds it, does not run as root", ErrNotRoot, p)
			return false
		case h.PID == 0:
			h = Holder{p, n}
		}
		return true
	})
	switch {
	case err != nil:
		return Holder{}, fmt.Errorf("find the listener's process: %w", err)
	case refused != nil:
		return Holder{}, refused
	case h.PID == 0:
		return Holder{}, fmt.Errorf("socket inode %d: %w", inode, ErrNoHolder)
	}
	return h, nil
}

// eachSocket calls fn with each socket descriptor in /proc: the process,
// the descriptor's number and the socket's inode, leaving out this
// process and those skip names (before their descriptors are listed); fn
// returns false to stop. denied says that the descriptors of some process
// could not be read for lack of permission.
func eachSocket(skip func(pid int) bool, fn func(pid, fd int, inode uint32) bool) (denied bool, err error) {
	dirs, err := os.ReadDir(Proc)
	if err != nil {
		return false, err
	}
	self := os.Getpid()
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil || p == self || (skip != nil && skip(p)) {
			continue
		}
		dir := filepath.Join(Proc, d.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			denied = denied || errors.Is(err, fs.ErrPermission)
			continue // gone, a kernel thread, or no access
		}
		for _, f := range fds {
			link, err := os.Readlink(filepath.Join(dir, f.Name()))
			if err != nil {
				denied = denied || errors.Is(err, fs.ErrPermission)
				continue
			}
			rest, ok := strings.CutPrefix(link, "socket:[")
			ino, err1 := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 32)
			n, err2 := strconv.Atoi(f.Name())
			if ok && err1 == nil && err2 == nil && !fn(p, n, uint32(ino)) {
				return denied, nil
			}
		}
	}
	return denied, nil
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
	var skip func(int) bool
	if owners {
		uids := map[string]bool{}
		for _, uid := range want {
			uids[strconv.FormatUint(uint64(uid), 10)] = true
		}
		skip = func(p int) bool {
			ids, err := statusUIDs(p)
			return err != nil || len(ids) == 0 || !uids[ids[0]]
		}
	}
	denied, _ = eachSocket(skip, func(p, n int, ino uint32) bool {
		if _, ok := want[ino]; ok {
			if _, ok := found[ino]; !ok {
				found[ino] = Holder{p, n}
			}
		}
		return len(found) < len(want)
	})
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

// statusUIDs returns the fields of the Uid line of /proc/PID/status: the
// real, effective, saved and file-system uids.
func statusUIDs(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(Proc, strconv.Itoa(pid), "status"))
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strings.Fields(rest), nil
		}
	}
	return nil, fmt.Errorf("%s/%d/status: no Uid line", Proc, pid)
}

// Take duplicates the socket with inode from its holder h into this
// process (pidfd_open, pidfd_getfd, close-on-exec) and checks that it is
// that TCP socket, still listening: between reading /proc and
// pidfd_getfd, the process may have closed the descriptor and opened
// something else under its number, or exited and its PID been reused.
// The caller closes the descriptor.
func Take(h Holder, inode uint32) (int, error) {
	pid, fd := h.PID, h.FD
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
