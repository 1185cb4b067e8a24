//go:build linux

package server

import (
	"context"
	"errors"

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
		Apply:    c.Apply,
		AddValid: c.AddValid,
		Read:     c.Read,
		Counters: c.ReadCounters,
		Teardown: c.Teardown,
		Watch:    c.Watch,
		Spent:    c.Spent,
		Admissions: func(group uint16) (AdmissionFeed, error) {
			return admitlog.Listen(netns, group)
		},
		Sessions: func(ports []uint16) ([]nftgen.Session, error) {
			conns, err := hostconns.Established(netns, ports)
			out := make([]nftgen.Session, len(conns))
			for i, c := range conns {
				out[i] = nftgen.Session{Src: c.Remote, Dst: c.Local}
			}
			return out, err
		},
		ApplySessions: c.ApplySessions,
		AddSessions:   c.AddSessions,
		ConntrackLost: func(ctx context.Context) (<-chan struct{}, error) {
			return hostconns.WatchLost(ctx, netns)
		},
		Listeners: func(port uint16, key []byte) ([]ListenerState, error) {
			ls, err := tcpsign.Listeners(netns, port)
			out := make([]ListenerState, len(ls))
			for i, l := range ls {
				out[i] = ListenerState{Local: l.Local, Inode: l.Inode, Signed: l.SignedWith(key)}
			}
			return out, err
		},
		SignListeners: func(port uint16, key []byte) ([]ListenerState, error) {
			rs, err := tcpsign.Sign(netns, port, key)
			out := make([]ListenerState, len(rs))
			for i, r := range rs {
				out[i] = ListenerState{Local: r.Listener.Local, Inode: r.Listener.Inode, PID: r.PID, Signed: r.Signed, Changed: r.Changed, Err: r.Err}
			}
			return out, err
		},
		LockListener: lockListener,
	}
}

// lockListener is Kernel.LockListener: the socket is taken from whichever
// process holds it (the filter is no secret, unlike a signing key, and a
// protected port admits no unknocked SYN whoever listens on it).
func lockListener(inode, bit uint32, attach bool) LockResult {
	fd, pid, err := tcpsign.Duplicate(inode, false)
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
