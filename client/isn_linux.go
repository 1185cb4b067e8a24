//go:build linux

package client

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
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
// socket's ISN: when CAP_NET_ADMIN is not in its effective set. One capget,
// no socket: no packet is sent and no slot is spent.
func CheckCapability() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capability check: capget: %w", err)
	}
	if data[0].Effective&(1<<unix.CAP_NET_ADMIN) == 0 {
		return ErrNoCapability
	}
	return nil
}

// prepare returns a net.Dialer Control function that readies the socket
// before connect(): with signKey, the TCP-MD5 key for peer (no capability
// needed); then the source port (when sport is not 0) and the ISN, with
// set (nil: setISNFD, in this process).
func prepare(peer netip.Addr, isn uint32, sport uint16, signKey []byte, set func(fd int, isn uint32, sport uint16) error) func(network, address string, c syscall.RawConn) error {
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
			serr = set(int(fd), isn, sport)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// setISNFD sets the ISN in this process: bind to source port sport (when
// not 0) on the wildcard address of the socket's family, TCP_REPAIR on,
// select the send queue, set its sequence number, TCP_REPAIR off;
// connect() then sends SYN with that sequence number. The socket is this
// process's own, made by its dialer and never shared, so the order does
// not matter for safety; the bind comes first, as in the broker.
func setISNFD(fd int, isn uint32, sport uint16) error {
	if sport != 0 {
		if err := bindPort(fd, sport); err != nil {
			return err
		}
	}
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

// bindPort binds fd to port on the wildcard address of its family.
func bindPort(fd int, port uint16) error {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(port)}
	if dom == unix.AF_INET6 {
		sa = &unix.SockaddrInet6{Port: int(port)}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind", err)
	}
	return nil
}
