//go:build linux

package nftgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/mdlayher/netlink"
	"github.com/seqknock/seqknock/internal/nlwatch"
	"golang.org/x/sys/unix"
)

// ownPorts remembers the netlink port ids of the sockets this Conn sent
// batches from, so Watch can tell its own transactions from anyone else's.
type ownPorts struct {
	mu  sync.Mutex
	ids [16]uint32
	n   int
}

func (o *ownPorts) add(id uint32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ids[o.n%len(o.ids)] = id
	o.n++
}

func (o *ownPorts) has(id uint32) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := 0; i < min(o.n, len(o.ids)); i++ {
		if o.ids[i] == id {
			return true
		}
	}
	return false
}

// Watch reports, on the returned channel, every committed nftables
// transaction that touched the inet table named table (created, deleted or
// changed it, its chains, rules, sets or elements) and that this Conn did
// not send itself. Reports coalesce: the channel holds at most one. A lost
// notification (the socket's queue overflowed) is reported too, since it may
// have hidden a change. The channel closes when ctx ends or the socket
// fails; the caller then watches again.
//
// The kernel sends every change to the NFNLGRP_NFTABLES group as one message
// per object, then one NEWGEN message for the transaction. The messages of a
// transaction carry, in their header, the netlink port id of the socket that
// sent it: that is how our own batches are told apart, whatever pid
// namespace we run in. Knocks spent in the packet path emit no messages.
func (c *Conn) Watch(ctx context.Context, table string) (<-chan struct{}, error) {
	conn, err := nlwatch.Join(c.NetNS, unix.NFNLGRP_NFTABLES)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	_ = conn.SetReadBuffer(1 << 20)
	// Our own transactions announce every element they write (a cold
	// sync: 480,000 messages), more than any receive buffer holds: the
	// overflow would look like a lost foreign change and start a repair,
	// whose own announcements overflow again. A socket filter drops, in
	// the kernel, every notification sent on behalf of our batch socket.
	if pid, err := c.senderPID(); err == nil {
		if err := dropFrom(conn, pid); err != nil {
			conn.Close()
			return nil, fmt.Errorf("watch: %w", err)
		}
	}
	return nlwatch.Run(ctx, conn, func(notify func()) {
		c.watch.add(conn, notify)
		defer c.watch.remove(conn)
		touched := map[uint32]bool{} // port id -> touched our table
		for {
			msgs, err := conn.Receive()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, unix.ENOBUFS) {
					clear(touched)
					notify()
					continue
				}
				return
			}
			for _, m := range msgs {
				if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES {
					continue
				}
				switch uint16(m.Header.Type & 0xff) {
				case unix.NFT_MSG_NEWGEN:
					port := m.Header.PID
					if touched[port] && !c.own.has(port) {
						notify()
					}
					delete(touched, port)
				default:
					if touchesTable(m.Data, table) {
						touched[m.Header.PID] = true
					}
				}
			}
		}
	}), nil
}

// dropFrom attaches a classic BPF filter to conn that drops every message
// whose (first) netlink header carries port id pid: the kernel sends a
// transaction's notifications in skbs of that transaction alone.
func dropFrom(conn *netlink.Conn, pid uint32) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	// BPF loads are big endian; nlmsg_pid (offset 12) is host order.
	var k [4]byte
	binary.NativeEndian.PutUint32(k[:], pid)
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 12},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: binary.BigEndian.Uint32(k[:])},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff},
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("filter own notifications: %w", serr)
	}
	return nil
}

// touchesTable reports whether an nftables notification (nfgenmsg and
// attributes) is about the inet table named table. Attribute 1 is the table
// name in the messages of every object type.
func touchesTable(data []byte, table string) bool {
	if len(data) < 4 || data[0] != unix.NFPROTO_INET {
		return false
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	for err == nil && ad.Next() {
		if ad.Type() == 1 {
			return string(bytes.TrimRight(ad.Bytes(), "\x00")) == table
		}
	}
	return false
}
