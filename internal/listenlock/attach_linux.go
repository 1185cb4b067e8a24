//go:build linux

package listenlock

import (
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// State is what a socket's filter is, as Check reads it.
type State int

const (
	// Unlocked: the socket has no filter.
	Unlocked State = iota
	// Locked: the socket has this package's program for the bit asked.
	Locked
	// OtherBit: this package's program for another bit (the config's
	// packet_mark_bit changed since): Attach replaces it.
	OtherBit
	// Foreign: someone else's filter; Attach leaves it alone.
	Foreign
)

func (s State) String() string {
	switch s {
	case Unlocked:
		return "unlocked"
	case Locked:
		return "locked"
	case OtherBit:
		return "locked for another mark bit"
	case Foreign:
		return "another socket filter is attached"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// ErrForeign is returned by Attach for a socket that has someone else's
// filter: replacing it could break the service, so the socket is left as
// it is (and reported unlocked).
var ErrForeign = errors.New("another socket filter is attached; left alone")

// ErrMPTCP is returned by Attach for a Multipath TCP listener: the kernel
// takes no socket filter on one (EOPNOTSUPP), so only the table protects
// it. Go programs since Go 1.24 listen with MPTCP where the kernel has it,
// unless they turn it off.
var ErrMPTCP = errors.New("a Multipath TCP listener, which takes no socket filter")

// maxInsns is BPF_MAXINSNS: no classic program is longer.
const maxInsns = 4096

// Filter reads the classic BPF program attached to the socket fd
// (SO_GET_FILTER; nil when there is none).
func Filter(fd int) ([]unix.SockFilter, error) {
	// SO_GET_FILTER's length is in instructions, not bytes.
	buf := make([]unix.SockFilter, maxInsns)
	n := uint32(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_GET_FILTER,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return nil, fmt.Errorf("getsockopt SO_GET_FILTER: %w", e)
	}
	if n == 0 {
		return nil, nil
	}
	return buf[:n], nil
}

// Check reads the state of the socket fd's filter against packet mark bit
// bit. An eBPF filter, which the kernel does not show (EACCES), is
// Foreign; a Multipath TCP listener without a filter is Unlocked with
// ErrMPTCP, since it takes none.
func Check(fd int, bit uint32) (State, error) {
	want, err := Program(bit)
	if err != nil {
		return Unlocked, err
	}
	got, err := Filter(fd)
	switch {
	case errors.Is(err, unix.EACCES):
		// The kernel does not show an eBPF filter (SO_ATTACH_BPF):
		// the service's own, like any filter that is not this one.
		return Foreign, nil
	case err != nil:
		return Unlocked, err
	case got == nil:
		if proto, perr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); perr == nil && proto == unix.IPPROTO_MPTCP {
			return Unlocked, ErrMPTCP
		}
		return Unlocked, nil
	case slices.Equal(got, want):
		return Locked, nil
	}
	if _, ok := OwnBit(got); ok {
		return OtherBit, nil
	}
	return Foreign, nil
}

// Attach locks the socket fd for packet mark bit bit: it attaches Program
// unless the socket has it already (changed false), replaces an older
// lock for another bit, and refuses a foreign filter (ErrForeign). The
// filter stays on the socket, and on the connections it accepts, until
// the socket is closed.
func Attach(fd int, bit uint32) (changed bool, err error) {
	st, err := Check(fd, bit)
	if err != nil {
		return false, fmt.Errorf("lock listener: %w", err)
	}
	switch st {
	case Locked:
		return false, nil
	case Foreign:
		return false, fmt.Errorf("lock listener: %w", ErrForeign)
	}
	prog, _ := Program(bit)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		if proto, perr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); perr == nil && proto == unix.IPPROTO_MPTCP {
			return false, fmt.Errorf("lock listener: %w", ErrMPTCP)
		}
		if errors.Is(err, unix.EPERM) {
			return false, fmt.Errorf("lock listener: setsockopt SO_ATTACH_FILTER: %w (the service locked its filter with SO_LOCK_FILTER)", err)
		}
		return false, fmt.Errorf("lock listener: setsockopt SO_ATTACH_FILTER: %w", err)
	}
	return true, nil
}

// Detach removes this package's filter, for any bit, from the socket fd
// (SO_DETACH_FILTER), and reports whether there was one; someone else's
// filter stays.
func Detach(fd int) (bool, error) {
	got, err := Filter(fd)
	if errors.Is(err, unix.EACCES) {
		return false, nil // an eBPF filter: not this package's
	}
	if err != nil {
		return false, fmt.Errorf("unlock listener: %w", err)
	}
	if _, ok := OwnBit(got); !ok {
		return false, nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); err != nil {
		return false, fmt.Errorf("unlock listener: setsockopt SO_DETACH_FILTER: %w", err)
	}
	return true, nil
}
