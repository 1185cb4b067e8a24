//go:build linux

package admitlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nfnetlink_log's protocol (linux/netfilter/nfnetlink_log.h); x/sys has
// none of it.
const (
	nfnlSubsysULOG   = 4
	nfulnlMsgPacket  = 0
	nfulnlMsgConfig  = 1
	nfulaPayload     = 9
	nfulaCfgCmd      = 1
	nfulaCfgMode     = 2
	nfulaCfgQthresh  = 5
	nfulnlCfgCmdBind = 1
	nfulnlCopyPacket = 2
)

// copyRange is how much of each packet the kernel copies: the largest IPv4
// header (60 bytes) or an IPv6 header (40), and a TCP header's first 20.
const copyRange = 80

// Admission is one admitted SYN.
type Admission struct {
	Src, Dst netip.AddrPort
	Seq      uint32 // the TCP sequence number: the knock
}

// ErrLost is returned by Drain when the kernel dropped messages because the
// socket's queue was full; the caller must find out another way what was
// admitted (read the used set).
var ErrLost = errors.New("admitlog: messages lost (socket queue overflowed)")

// Listener is a bound nflog group.
type Listener struct {
	conn    *netlink.Conn
	rc      syscall.RawConn
	ready   chan struct{}
	drained chan struct{}
	done    chan struct{}
	once    sync.Once
	buf     []byte
}

// Listen binds nflog group in the network namespace netns (a file
// descriptor; 0 is the calling thread's). Only one socket can bind a group
// in a namespace.
func Listen(netns int, group uint16) (*Listener, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("admitlog: dial netlink: %w", err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("admitlog: %w", err)
	}
	rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	})
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, copyRange)
	mode[4] = nfulnlCopyPacket
	qthresh := binary.BigEndian.AppendUint32(nil, 1) // a message per packet, at once
	for _, attrs := range [][]netlink.Attribute{
		{{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgCmdBind}}},
		{{Type: nfulaCfgMode, Data: mode}, {Type: nfulaCfgQthresh, Data: qthresh}},
	} {
		b, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			conn.Close()
			return nil, err
		}
		hdr := []byte{unix.AF_UNSPEC, 0, byte(group >> 8), byte(group)}
		_, err = conn.Execute(netlink.Message{
			Header: netlink.Header{
				Type:  netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgConfig),
				Flags: netlink.Request | netlink.Acknowledge,
			},
			Data: append(hdr, b...),
		})
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("admitlog: bind nflog group %d: %w", group, err)
		}
	}
	l := &Listener{
		conn: conn, rc: rc,
		ready:   make(chan struct{}, 1),
		drained: make(chan struct{}, 1),
		done:    make(chan struct{}),
		buf:     make([]byte, 1<<16),
	}
	go l.watch()
	return l, nil
}

// watch signals Ready whenever the socket has something queued, then waits
// for a Drain before looking again. It only peeks: all reading is Drain's.
func (l *Listener) watch() {
	peek := make([]byte, 1)
	for {
		err := l.rc.Read(func(fd uintptr) bool {
			_, _, err := unix.Recvfrom(int(fd), peek, unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return !errors.Is(err, unix.EAGAIN)
		})
		if err != nil {
			return // closed
		}
		select {
		case l.ready <- struct{}{}:
		default:
		}
		select {
		case <-l.drained:
		case <-l.done:
			return
		}
	}
}

// Ready is signalled when admissions may be queued; call Drain.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// Drain returns every admission queued now, without blocking.
func (l *Listener) Drain() ([]Admission, error) {
	var out []Admission
	var lost bool
	var rerr error
	err := l.rc.Control(func(fd uintptr) {
		for {
			n, _, err := unix.Recvfrom(int(fd), l.buf, unix.MSG_DONTWAIT)
			switch {
			case errors.Is(err, unix.EAGAIN):
				return
			case errors.Is(err, unix.ENOBUFS):
				lost = true
				continue
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil:
				rerr = err
				return
			}
			out = append(out, parseMessages(l.buf[:n])...)
		}
	})
	select {
	case l.drained <- struct{}{}:
	default:
	}
	if err != nil {
		return out, fmt.Errorf("admitlog: %w", err)
	}
	if rerr != nil {
		return out, fmt.Errorf("admitlog: read: %w", rerr)
	}
	if lost {
		return out, ErrLost
	}
	return out, nil
}

// Close unbinds the group.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.conn.Close()
	})
	return err
}

// parseMessages returns the admissions in one datagram of nflog messages.
func parseMessages(b []byte) []Admission {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil
	}
	var out []Admission
	for _, m := range msgs {
		if m.Header.Type != nfnlSubsysULOG<<8|nfulnlMsgPacket || len(m.Data) < 4 {
			continue
		}
		attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			continue
		}
		for _, a := range attrs {
			if a.Type == nfulaPayload {
				if adm, ok := ParsePacket(m.Data[0], a.Data); ok {
					out = append(out, adm)
				}
			}
		}
	}
	return out
}
