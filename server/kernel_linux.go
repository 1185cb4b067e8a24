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
// it). Each listener's holder is remembered, so the check every
// LockRecheck costs a pidfd_getfd, not a search through /proc. The
// listeners whose holder is not known are searched for together, in one
// pass over /proc each: root's listeners among the processes whose real
// uid is root, every round; other users' among their own processes, then
// every listener still unfound in every process, each of these two at
// most every HolderRetry. A listener found nowhere (held by no process,
// only by a message in flight, or by a process in another PID namespace)
// is not searched for again before the next such pass. So a local user's
// listeners and descriptors cost at most two passes every HolderRetry,
// and never slow the lock of a root service's new listener.
type lockers struct {
	mu      sync.Mutex
	holders map[uint32]tcpsign.Holder
	missing map[uint32]error // found nowhere at the last whole pass
	// nextOthers and nextAll are when the pass among other users'
	// processes, and the pass among every process, may run again.
	nextOthers, nextAll time.Time
}

// HolderRetry is how often, at most, the daemon searches the processes
// of users other than root, and then every process, for the holders of
// listeners it has not found.
const HolderRetry = 5 * time.Second

// maxHolders bounds the memory of holders and missing: past it, each
// starts afresh.
const maxHolders = 4096

// take duplicates each listener of ls from a process that holds it, and
// calls use with each descriptor (closed after), or with the error that
// says why there is none. thorough searches every process now, whatever
// was searched when.
func (k *lockers) take(ls []ListenerState, thorough bool, use func(i, fd, pid int, err error)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.holders == nil || len(k.holders) >= maxHolders {
		k.holders = map[uint32]tcpsign.Holder{}
	}
	if k.missing == nil || len(k.missing) >= maxHolders {
		k.missing = map[uint32]error{}
	}
	done := make([]bool, len(ls))
	try := func(i int, h tcpsign.Holder) bool {
		fd, err := tcpsign.Take(h, ls[i].Inode)
		if err != nil {
			return false
		}
		defer unix.Close(fd)
		k.holders[ls[i].Inode] = h
		delete(k.missing, ls[i].Inode)
		done[i] = true
		use(i, fd, h.PID, nil)
		return true
	}
	for i, l := range ls {
		if h, ok := k.holders[l.Inode]; ok && !try(i, h) {
			delete(k.holders, l.Inode)
		}
	}
	now := time.Now()
	for _, pass := range []struct {
		owners, root bool
		next         *time.Time
	}{{true, true, nil}, {true, false, &k.nextOthers}, {false, false, &k.nextAll}} {
		want := map[uint32]uint32{}
		for i, l := range ls {
			_, gone := k.missing[l.Inode]
			if done[i] || (gone && !thorough && pass.next == nil) || (pass.owners && (l.UID == 0) != pass.root) {
				continue
			}
			want[l.Inode] = l.UID
		}
		if len(want) == 0 {
			continue
		}
		if pass.next != nil && !thorough {
			if now.Before(*pass.next) {
				continue
			}
			*pass.next = now.Add(HolderRetry)
		}
		found := tcpsign.FindHolders(want, pass.owners)
		for i, l := range ls {
			if h, ok := found[l.Inode]; ok && !done[i] {
				try(i, h)
			}
		}
		if pass.next == &k.nextAll {
			for ino := range want {
				if _, ok := found[ino]; !ok {
					k.missing[ino] = fmt.Errorf("socket inode %d: %w", ino, tcpsign.ErrNoHolder)
				}
			}
		}
	}
	for i, l := range ls {
		if done[i] {
			continue
		}
		err := k.missing[l.Inode]
		if err == nil {
			err = fmt.Errorf("socket inode %d: holder not found yet (the processes of other users are searched at most every %v): %w", l.Inode, HolderRetry, tcpsign.ErrNoHolder)
		}
		use(i, -1, 0, err)
	}
}

func (k *lockers) Lock(ls []ListenerState, bit uint32, attach bool) []LockResult {
	out := make([]LockResult, len(ls))
	k.take(ls, false, func(i, fd, pid int, err error) {
		switch {
		case err != nil:
			out[i] = LockResult{PID: pid, Err: err}
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
	k.take([]ListenerState{{Inode: inode}}, true, func(_, fd, _ int, terr error) {
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
