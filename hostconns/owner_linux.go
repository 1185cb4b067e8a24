//go:build linux

package hostconns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoSocket is Owner's error when no local socket has that 4-tuple.
var ErrNoSocket = errors.New("no local socket has that address pair")

// Owner returns the uid owning the connected TCP socket of netns (0: the
// calling thread's) whose own address is local and whose peer is remote:
// for a loopback connection accepted at remote from local, the user of
// the process at the other end. Only an exact match of all four counts.
func Owner(netns int, local, remote netip.AddrPort) (uint32, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	family := uint8(unix.AF_INET6)
	if local.Addr().Is4() {
		family = unix.AF_INET
	}
	conn, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: netns})
	if err != nil {
		return 0, fmt.Errorf("sock_diag: %w", err)
	}
	defer conn.Close()
	req := make([]byte, 56) // struct inet_diag_req_v2
	req[0], req[1] = family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[4:8], connectedStates)
	binary.BigEndian.PutUint16(req[8:10], local.Port())   // id.idiag_sport
	binary.BigEndian.PutUint16(req[10:12], remote.Port()) // id.idiag_dport
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: netlink.Request | netlink.Dump},
		Data:   req,
	})
	if err != nil {
		return 0, fmt.Errorf("sock_diag dump: %w", err)
	}
	for _, m := range msgs {
		c, ok := parseDiagMsg(m.Data)
		// struct inet_diag_msg: idiag_uid follows the id, expires,
		// rqueue and wqueue.
		if !ok || len(m.Data) < 68 || c.Local != local || c.Remote != remote {
			continue
		}
		return binary.NativeEndian.Uint32(m.Data[64:68]), nil
	}
	return 0, fmt.Errorf("owner of %s -> %s: %w", local, remote, ErrNoSocket)
}
