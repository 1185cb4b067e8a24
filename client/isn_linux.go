//go:build linux

package client

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/seqknock/seqknock/tcpsign"
	"golang.org/x/sys/unix"
)

// tcpSendQueue is TCP_SEND_QUEUE, the TCP_REPAIR_QUEUE value that selects
// the send queue; x/sys/unix does not define it.
const tcpSendQueue = 2

// ErrNoCapability is returned when the process may not set a socket's ISN.
var ErrNoCapability = errors.New("setting the TCP initial sequence number needs CAP_NET_ADMIN: " +
	"run seqknock under sudo, or give it the capability: sudo setcap cap_net_admin+ep $(command -v seqknock)")

// CheckCapability returns ErrNoCapability when this process may not set a
// socket's ISN. It turns TCP_REPAIR on for a socket it then closes: no
// packet is sent and no slot is spent.
func CheckCapability() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("capability check: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		if errors.Is(err, unix.EPERM) {
			return ErrNoCapability
		}
		return fmt.Errorf("capability check: set TCP_REPAIR: %w", err)
	}
	return nil
}

// prepare returns a net.Dialer Control function that readies the socket
// before connect(): with signKey, the TCP-MD5 key for peer (no capability
// needed); then the ISN, with set (nil: setISNFD, in this process).
func prepare(peer netip.Addr, isn uint32, signKey []byte, set func(fd int, isn uint32) error) func(network, address string, c syscall.RawConn) error {
	if set == nil {
		set = setISNFD
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if signKey != nil {
				if serr = tcpsign.SetPeerKey(int(fd), peer, signKey); serr != nil {
					return
				}
			}
			serr = set(int(fd), isn)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// setISNFD sets the ISN in this process: TCP_REPAIR on, select the send
// queue, set its sequence number, TCP_REPAIR off; connect() then sends SYN
// with that sequence number.
func setISNFD(fd int, isn uint32) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		if errors.Is(err, unix.EPERM) {
			return ErrNoCapability
		}
		return fmt.Errorf("set TCP_REPAIR: %w", err)
	}
	err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue)
	if err == nil {
		// The kernel reads a u32; values of 2^31 and above pass through the
		// int conversion with the same bits.
		err = unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ, int(int32(isn)))
	}
	if off := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); off != nil && err == nil {
		err = off
	}
	if err != nil {
		return fmt.Errorf("set ISN: %w", err)
	}
	return nil
}
