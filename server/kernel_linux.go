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
		out[i] = ListenerState{Local: l.Local, Inode: l.Inode, Signed: l.SignedWith(key)}
	}
	return out, err
}

func (k *listeners) Sign(port uint16, key []byte) ([]ListenerState, error) {
	rs, err := tcpsign.Sign(k.netns, port, key)
	out := make([]ListenerState, len(rs))
	for i, r := range rs {
		out[i] = ListenerState{Local: r.Listener.Local, Inode: r.Listener.Inode, PID: r.PID, Signed: r.Signed, Changed: r.Changed, Err: r.Err}
	}
	return out, err
}

// lockers are Listeners.Lock and Unlock. The socket is
// taken from whichever process holds it (the filter is no secret, unlike
// a signing key, and a protected port admits no unknocked SYN whoever
// listens on it). Each listener's holder is remembered, so the check every
// LockRecheck costs a pidfd_getfd, not a search through /proc.
type lockers struct {
	mu      sync.Mutex
	holders map[uint32]tcpsign.Holder
}

// maxHolders bounds the memory of holders: past it, it starts afresh.
const maxHolders = 4096

func (k *lockers) dup(inode uint32) (int, int, error) {
	k.mu.Lock()
	hint := k.holders[inode]
	k.mu.Unlock()
	fd, h, err := tcpsign.DuplicateVia(inode, false, hint)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.holders == nil || len(k.holders) >= maxHolders {
		k.holders = map[uint32]tcpsign.Holder{}
	}
	if err != nil {
		delete(k.holders, inode)
		return -1, 0, err
	}
	k.holders[inode] = h
	return fd, h.PID, nil
}

func (k *lockers) Lock(inode, bit uint32, attach bool) LockResult {
	fd, pid, err := k.dup(inode)
	if err != nil {
		return LockResult{PID: pid, Err: err}
	}
	defer unix.Close(fd)
	if !attach {
		st, err := listenlock.Check(fd, bit)
		if err == nil && st != listenlock.Locked {
			err = errors.New(st.String())
			if st == listenlock.Unlocked {
				err = nil
			}
		}
		return LockResult{PID: pid, Locked: st == listenlock.Locked, Err: err}
	}
	changed, err := listenlock.Attach(fd, bit)
	return LockResult{PID: pid, Locked: err == nil, Changed: changed, Err: err}
}

func (k *lockers) Unlock(inode uint32) (bool, error) {
	fd, _, err := k.dup(inode)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	return listenlock.Detach(fd)
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
