//go:build linux

package hostconns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/mdlayher/netlink"
	"github.com/seqknock/seqknock/internal/nlwatch"
	"golang.org/x/sys/unix"
)

// Conn is one TCP connection of a local socket.
type Conn struct {
	Local, Remote netip.AddrPort
}

// TCP states (include/net/tcp_states.h) of sockets that are connected and
// may still receive packets from the peer.
var connectedStates = uint32(1<<1 | // ESTABLISHED
	1<<4 | // FIN_WAIT1
	1<<5 | // FIN_WAIT2
	1<<8 | // CLOSE_WAIT
	1<<9 | // LAST_ACK
	1<<11) // CLOSING

// Established returns the connected TCP sockets of the network namespace
// netns (a file descriptor; 0 is the calling thread's) whose local port is
// one of ports, IPv4 and IPv6.
func Established(netns int, ports []uint16) ([]Conn, error) {
	msgs, err := Dump(netns, connectedStates, 0, 0)
	if err != nil {
		return nil, err
	}
	var out []Conn
	for _, m := range msgs {
		if c, ok := parseDiagMsg(m); ok && slices.Contains(ports, c.Local.Port()) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Dump returns the sock_diag answers (each a struct inet_diag_msg and its
// attributes) for the TCP sockets of netns, IPv4 then IPv6, in the states
// of the bit mask states, with the extensions of the bit mask ext, and on
// local port sport when it is not 0.
func Dump(netns int, states uint32, ext uint8, sport uint16) ([][]byte, error) {
	conn, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	defer conn.Close()
	var out [][]byte
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		msgs, err := conn.Execute(diagRequest(family, states, ext, sport, netlink.Dump))
		if err != nil {
			return nil, fmt.Errorf("sock_diag dump: %w", err)
		}
		for _, m := range msgs {
			out = append(out, m.Data)
		}
	}
	return out, nil
}

// diagRequest asks for the TCP sockets of family that Dump's arguments
// describe (struct inet_diag_req_v2).
func diagRequest(family uint8, states uint32, ext uint8, sport uint16, flags netlink.HeaderFlags) netlink.Message {
	req := make([]byte, 56)
	req[0], req[1], req[2] = family, unix.IPPROTO_TCP, ext
	binary.NativeEndian.PutUint32(req[4:8], states)
	binary.BigEndian.PutUint16(req[8:10], sport) // id.idiag_sport
	return netlink.Message{Header: netlink.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: netlink.Request | flags}, Data: req}
}

// parseDiagMsg reads a struct inet_diag_msg: family, state, timer, retrans,
// then the socket id (ports big-endian, addresses in 16 bytes each).
func parseDiagMsg(b []byte) (Conn, bool) {
	if len(b) < 4+48 {
		return Conn{}, false
	}
	id := b[4:]
	sport, dport := binary.BigEndian.Uint16(id[0:2]), binary.BigEndian.Uint16(id[2:4])
	var src, dst netip.Addr
	switch b[0] {
	case unix.AF_INET:
		src, dst = netip.AddrFrom4([4]byte(id[4:8])), netip.AddrFrom4([4]byte(id[20:24]))
	case unix.AF_INET6:
		src, dst = netip.AddrFrom16([16]byte(id[4:20])).Unmap(), netip.AddrFrom16([16]byte(id[20:36])).Unmap()
	default:
		return Conn{}, false
	}
	return Conn{Local: netip.AddrPortFrom(src, sport), Remote: netip.AddrPortFrom(dst, dport)}, true
}

// WatchLost reports, on the returned channel (coalesced, at most one
// pending), every time conntrack destroys entries in netns: connections
// closing, timing out, or flushed with `conntrack -F`. A lost notification
// (queue overflow) is reported too. The channel closes when ctx ends or the
// socket fails.
func WatchLost(ctx context.Context, netns int) (<-chan struct{}, error) {
	conn, err := nlwatch.Join(netns, unix.NFNLGRP_CONNTRACK_DESTROY)
	if err != nil {
		return nil, fmt.Errorf("conntrack events: %w", err)
	}
	return nlwatch.Run(ctx, conn, func(notify func()) {
		for {
			_, err := conn.Receive()
			if err != nil && !errors.Is(err, unix.ENOBUFS) {
				return
			}
			notify()
		}
	}), nil
}
