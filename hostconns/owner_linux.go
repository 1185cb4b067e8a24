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
	// One socket by its id, looked up in the kernel's hash (a dump would
	// walk the whole table): struct inet_diag_req_v2 with the ports, the
	// addresses and no cookie.
	msg := diagRequest(family, connectedStates, 0, local.Port(), 0)
	req := msg.Data
	binary.BigEndian.PutUint16(req[10:12], remote.Port()) // id.idiag_dport
	copy(req[12:28], local.Addr().AsSlice())              // id.idiag_src
	copy(req[28:44], remote.Addr().AsSlice())             // id.idiag_dst
	binary.NativeEndian.PutUint32(req[48:52], ^uint32(0)) // id.idiag_cookie: INET_DIAG_NOCOOKIE
	binary.NativeEndian.PutUint32(req[52:56], ^uint32(0))
	msgs, err := conn.Execute(msg)
	if errors.Is(err, unix.ENOENT) {
		return 0, fmt.Errorf("owner of %s -> %s: %w", local, remote, ErrNoSocket)
	}
	if err != nil {
		return 0, fmt.Errorf("sock_diag: %w", err)
	}
	for _, m := range msgs {
		c, ok := parseDiagMsg(m.Data)
		// The lookup may answer with a listener or a closing socket:
		// only a connected socket with exactly this pair counts.
		// struct inet_diag_msg: idiag_uid follows the id, expires,
		// rqueue and wqueue.
		if !ok || len(m.Data) < 68 || connectedStates&(1<<m.Data[1]) == 0 || c.Local != local || c.Remote != remote {
			continue
		}
		return binary.NativeEndian.Uint32(m.Data[64:68]), nil
	}
	return 0, fmt.Errorf("owner of %s -> %s: %w", local, remote, ErrNoSocket)
}
