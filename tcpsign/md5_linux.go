//go:build linux

package tcpsign

import (
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// md5Cmd builds a struct tcp_md5sig for addr (in the form the socket's
// family wants: an AF_INET6 socket takes IPv4 peers as v4-mapped
// addresses), with prefix length prefix, or an exact address when prefix
// is negative.
func md5Cmd(family int, addr netip.Addr, prefix int, key []byte) (*unix.TCPMD5Sig, error) {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return nil, fmt.Errorf("tcp-md5 key of %d bytes: want 1..%d", len(key), MaxKeyLen)
	}
	cmd := &unix.TCPMD5Sig{Keylen: uint16(len(key))}
	copy(cmd.Key[:], key)
	if prefix >= 0 {
		cmd.Flags = unix.TCP_MD5SIG_FLAG_PREFIX
		cmd.Prefixlen = uint8(prefix)
	}
	switch family {
	case unix.AF_INET:
		if !addr.Unmap().Is4() {
			return nil, fmt.Errorf("tcp-md5: %s on an IPv4 socket", addr)
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&cmd.Addr))
		sa.Family = unix.AF_INET
		sa.Addr = addr.Unmap().As4()
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&cmd.Addr))
		sa.Family = unix.AF_INET6
		sa.Addr = addr.As16() // an IPv4 address comes out v4-mapped
	default:
		return nil, fmt.Errorf("tcp-md5: socket family %d is not IP", family)
	}
	return cmd, nil
}

// SetPeerKey makes the TCP socket fd sign its segments to peer with key,
// and drop those from peer not signed with it. Set it before connect(); it
// needs no capability.
func SetPeerKey(fd int, peer netip.Addr, key []byte) error {
	family, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("set tcp-md5 key: %w", err)
	}
	cmd, err := md5Cmd(family, peer, -1, key)
	if err != nil {
		return fmt.Errorf("set tcp-md5 key: %w", err)
	}
	if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, cmd); err != nil {
		return fmt.Errorf("set tcp-md5 key for %s: %w", peer, err)
	}
	return nil
}

// anyPeer are the prefix-0 keys a listening socket of family needs to
// sign with every peer: for AF_INET6, the IPv6 one and the IPv4 one
// (given v4-mapped), which IPv4 peers of a dual-stack socket use.
func anyPeer(family int) []netip.Addr {
	if family == unix.AF_INET {
		return []netip.Addr{netip.IPv4Unspecified()}
	}
	return []netip.Addr{netip.IPv6Unspecified(), netip.AddrFrom16(netip.IPv4Unspecified().As16())}
}

// SetListenerKey puts key on the listening socket fd for every peer
// (TCP_MD5SIG_EXT with prefix length 0, IPv4 and IPv6). A key already there
// for the same prefix is replaced.
func SetListenerKey(fd int, key []byte) error {
	family, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("set tcp-md5 key: %w", err)
	}
	for _, a := range anyPeer(family) {
		cmd, err := md5Cmd(family, a, 0, key)
		if err != nil {
			return fmt.Errorf("set tcp-md5 key: %w", err)
		}
		if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG_EXT, cmd); err != nil {
			return fmt.Errorf("set tcp-md5 key for any peer (%s/0): %w", a, err)
		}
	}
	return nil
}

// tcpAOAddKey is TCP_AO_ADD_KEY (Linux 6.7); x/sys/unix does not define
// it.
const tcpAOAddKey = 38

// AOSupport returns nil when the running kernel has TCP-AO, ErrNoTCPAO
// when it has not. It asks a fresh socket to add an empty key: a kernel
// without TCP-AO does not know the option (ENOPROTOOPT or EOPNOTSUPP); one
// with it refuses the empty key for its size.
func AOSupport() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("tcp-ao check: %w", err)
	}
	defer unix.Close(fd)
	err = unix.SetsockoptString(fd, unix.IPPROTO_TCP, tcpAOAddKey, "")
	if errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP) {
		return ErrNoTCPAO
	}
	return nil
}
