//go:build linux

package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/seqknock/seqknock/admitlog"
	"github.com/seqknock/seqknock/hostconns"
	"github.com/seqknock/seqknock/internal/listenlock"
	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/tcpsign"
	"golang.org/x/sys/unix"
)

// NewKernel returns the Kernel for the network namespace netns (0: the
// current one).
func NewKernel(netns int) Kernel {
	c := &nftgen.Conn{NetNS: netns}
	return Kernel{
		Table:     c,
		Feeds:     feeds(netns),
		Sessions:  sessions{c},
		Listeners: &listeners{netns: netns},
	}
}

// feeds are the Feeds of the network namespace (0: the current one).
type feeds int

func (n feeds) Admissions(group uint16) (AdmissionFeed, error) {
	return admitlog.Listen(int(n), group)
}

func (n feeds) ConntrackLost(ctx context.Context) (<-chan struct{}, error) {
	return hostconns.WatchLost(ctx, int(n))
}

// sessions are the Sessions of c's network namespace.
type sessions struct{ *nftgen.Conn }

func (s sessions) Established(ports []uint16) ([]nftgen.Session, error) {
	conns, err := hostconns.Established(s.NetNS, ports)
	out := make([]nftgen.Session, len(conns))
	for i, c := range conns {
		out[i] = nftgen.Session{Src: c.Remote, Dst: c.Local}
	}
	return out, err
}

// listeners are the Listeners of the network namespace netns.
type listeners struct {
	netns int
	lockers
}

func (k *listeners) List(port uint16, key []byte) ([]ListenerState, error) {
	ls, err := tcpsign.Listeners(k.netns, port)
	out := make([]ListenerState, len(ls))
	for i, l := range ls {
		out[i] = ListenerState{Local: l.Local, Inode: l.Inode, UID: l.UID, Signed: l.SignedWith(key)}
	}
	return out, err
}

func (k *listeners) Sign(port uint16, key []byte) ([]ListenerState, error) {
	rs, err := tcpsign.Sign(k.netns, port, key)
	out := make([]ListenerState, len(rs))
	for i, r := range rs {
		out[i] = ListenerState{Local: r.Listener.Local, Inode: r.Listener.Inode, UID: r.Listener.UID, PID: r.PID, Signed: r.Signed, Changed: r.Changed, Err: r.Err}
	}
	return out, err
}

// lockers are Listeners.Lock and Unlock. The socket is taken from
// whichever process holds it (the filter is no secret, unlike a signing
// key, and a protected port admits no unknocked SYN whoever listens on
// it), and each holder is remembered, so a recheck costs a pidfd_getfd,
// not a search through /proc.
//
// Unknown holders are searched for in one pass over /proc: root's
// listeners among root's processes at every call; the rest (the slow
// search: each owner's processes, then every process) before the first
// call returns, later in the background at most every HolderRetry, the
// listener's result Pending meanwhile. A listener found nowhere waits for
// the next slow search. So no local user's listeners or descriptors hold
// up a call, nor the lock of a root service's new listener.
type lockers struct {
	mu      sync.Mutex
	holders map[uint32]tcpsign.Holder
	missing map[uint32]error // found nowhere by the last slow search
	// searched: a call was made (the first searches in full);
	// searching: a slow search runs now; nextSlow: when the next may
	// start.
	searched, searching bool
	nextSlow            time.Time
}

// HolderRetry is how often, at most, the daemon searches the processes
// of users other than root, and then every process, for the holders of
// listeners it has not found.
const HolderRetry = 5 * time.Second

// maxHolders bounds the memory of holders and missing: past it, each
// starts afresh.
const maxHolders = 4096

// errPending is a listener's error while the slow search for its holder
// is under way or due.
var errPending = fmt.Errorf("holder not found among its owner's processes yet; every process is searched at most every %v: %w", HolderRetry, tcpsign.ErrNoHolder)

// take duplicates each listener of ls from a process that holds it, and
// calls use with each descriptor (closed after), or with the error that
// says why there is none (pending: the slow search may still find it).
// thorough makes the slow search now, whatever was searched when.
func (k *lockers) take(ls []ListenerState, thorough bool, use func(i, fd, pid int, pending bool, err error)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.holders == nil || len(k.holders) >= maxHolders {
		k.holders = map[uint32]tcpsign.Holder{}
	}
	if k.missing == nil || len(k.missing) >= maxHolders {
		k.missing = map[uint32]error{}
	}
	first := !k.searched
	k.searched = true
	done := make([]bool, len(ls))
	// failed: why a holder a search found could not be taken (pidfd
	// access refused, say), the listener's reason unless another is.
	failed := make([]error, len(ls))
	try := func(i int, h tcpsign.Holder) error {
		fd, err := tcpsign.Take(h, ls[i].Inode)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		k.holders[ls[i].Inode] = h
		delete(k.missing, ls[i].Inode)
		done[i] = true
		use(i, fd, h.PID, false, nil)
		return nil
	}
	tryFound := func(found map[uint32]tcpsign.Holder) {
		for i, l := range ls {
			if h, ok := found[l.Inode]; ok && !done[i] {
				failed[i] = try(i, h)
			}
		}
	}
	for i, l := range ls {
		if h, ok := k.holders[l.Inode]; ok && try(i, h) != nil {
			delete(k.holders, l.Inode)
		}
	}
	root := map[uint32]uint32{}
	for i, l := range ls {
		if !done[i] && l.UID == 0 {
			root[l.Inode] = 0
		}
	}
	if len(root) > 0 {
		found, denied := tcpsign.FindHolders(root, true)
		tryFound(found)
		for i, l := range ls {
			if _, ok := root[l.Inode]; ok && !done[i] && failed[i] == nil && denied {
				failed[i] = noAccess(l.Inode)
			}
		}
	}
	rest := map[uint32]uint32{}
	for i, l := range ls {
		if !done[i] {
			rest[l.Inode] = l.UID
		}
	}
	now := time.Now()
	switch {
	case len(rest) == 0:
	case thorough || first:
		k.nextSlow = now.Add(HolderRetry)
		found, missing := slowSearch(rest)
		k.record(found, missing)
		tryFound(found)
	case !k.searching && !now.Before(k.nextSlow):
		k.searching, k.nextSlow = true, now.Add(HolderRetry)
		go func() {
			found, missing := slowSearch(rest)
			k.mu.Lock()
			defer k.mu.Unlock()
			k.record(found, missing)
			k.searching = false
		}()
	}
	for i, l := range ls {
		if done[i] {
			continue
		}
		if failed[i] != nil {
			use(i, -1, 0, false, failed[i])
		} else if err := k.missing[l.Inode]; err != nil {
			use(i, -1, 0, false, err)
		} else {
			use(i, -1, 0, true, errPending)
		}
	}
}

// slowSearch looks for the holders of want (inode: owner uid) among
// their owners' processes, then for those still unfound among every
// process; it returns those found and, for the rest, why not.
func slowSearch(want map[uint32]uint32) (map[uint32]tcpsign.Holder, map[uint32]error) {
	found, denied1 := tcpsign.FindHolders(want, true)
	rest := map[uint32]uint32{}
	for ino, uid := range want {
		if _, ok := found[ino]; !ok {
			rest[ino] = uid
		}
	}
	missing := map[uint32]error{}
	more, denied2 := tcpsign.FindHolders(rest, false)
	for ino, h := range more {
		found[ino] = h
	}
	for ino := range rest {
		switch _, ok := found[ino]; {
		case ok:
		case denied1 || denied2:
			missing[ino] = noAccess(ino)
		default:
			missing[ino] = fmt.Errorf("socket inode %d: %w", ino, tcpsign.ErrNoHolder)
		}
	}
	return found, missing
}

// noAccess is the error for a listener not found where some process's
// descriptors could not be read.
func noAccess(inode uint32) error {
	return fmt.Errorf("socket inode %d: not found, and %w: the descriptors of some processes cannot be read (seqknockd needs CAP_SYS_PTRACE)", inode, tcpsign.ErrNoAccess)
}

// record keeps what a slow search found. Called with k.mu held.
func (k *lockers) record(found map[uint32]tcpsign.Holder, missing map[uint32]error) {
	for ino, h := range found {
		if len(k.holders) < maxHolders {
			k.holders[ino] = h
		}
		delete(k.missing, ino)
	}
	for ino, err := range missing {
		if len(k.missing) < maxHolders {
			k.missing[ino] = err
		}
	}
}

func (k *lockers) Lock(ls []ListenerState, bit uint32, attach bool) []LockResult {
	out := make([]LockResult, len(ls))
	k.take(ls, false, func(i, fd, pid int, pending bool, err error) {
		switch {
		case err != nil:
			out[i] = LockResult{PID: pid, Pending: pending, Err: err}
		case !attach:
			st, err := listenlock.Check(fd, bit)
			if err == nil && st != listenlock.Locked && st != listenlock.Unlocked {
				err = errors.New(st.String())
			}
			out[i] = LockResult{PID: pid, Locked: st == listenlock.Locked, Err: err}
		default:
			changed, err := listenlock.Attach(fd, bit)
			out[i] = LockResult{PID: pid, Locked: err == nil, Changed: changed, Err: err}
		}
	})
	return out
}

func (k *lockers) Unlock(inode uint32) (ok bool, err error) {
	k.take([]ListenerState{{Inode: inode}}, true, func(_, fd, _ int, _ bool, terr error) {
		if terr != nil {
			err = terr
			return
		}
		ok, err = listenlock.Detach(fd)
	})
	return ok, err
}

// OtherNetns looks, for each network namespace other than k's (0: this
// thread's) that a process here is in, for listeners of port, through the
// namespace of the first such process.
func (k *listeners) OtherNetns(port uint16) ([]string, error) {
	var own unix.Stat_t
	var err error
	if k.netns != 0 {
		err = unix.Fstat(k.netns, &own)
	} else {
		err = unix.Stat("/proc/thread-self/ns/net", &own)
	}
	if err != nil {
		return nil, fmt.Errorf("other network namespaces: %w", err)
	}
	dirs, err := os.ReadDir(tcpsign.Proc)
	if err != nil {
		return nil, fmt.Errorf("other network namespaces: %w", err)
	}
	seen := map[uint64]bool{own.Ino: true}
	var out []string
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		path := filepath.Join(tcpsign.Proc, d.Name(), "ns", "net")
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil || seen[st.Ino] {
			continue // gone, a kernel thread, or a namespace seen
		}
		seen[st.Ino] = true
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		ls, err := tcpsign.Listeners(fd, port)
		unix.Close(fd)
		if err != nil {
			continue
		}
		for _, l := range ls {
			out = append(out, fmt.Sprintf("%s (network namespace of pid %d)", l.Local, pid))
		}
	}
	return out, nil
}
