//go:build linux

package broker

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/seqknock/seqknock/internal/covhook"
	"golang.org/x/sys/unix"
)

// brokerHandedEnv names the descriptor of the broker's listening socket
// that KeepOnlyNetAdmin's fresh image serves (cgo builds), and
// brokerRemoveEnv the socket's path, which that image removes when done
// (the socket was made by hand, not by systemd).
const (
	brokerHandedEnv = "SEQKNOCK_BROKER_FD"
	brokerRemoveEnv = "SEQKNOCK_BROKER_REMOVE"
)

// capNetAdminOnly is the one capability the broker keeps.
const capNetAdminOnly = uint64(1) << unix.CAP_NET_ADMIN

// KeepOnlyNetAdmin gives up every capability but CAP_NET_ADMIN, on every
// thread: the bounding set, the permitted, effective and inheritable sets
// (and so the ambient set), so that it binds nothing its callers could
// not bind themselves. A process that holds nothing else (the unit's
// broker) has nothing to do.
//
// In a CGO_ENABLED=0 build every thread is reached with
// syscall.AllThreadsSyscall (PR_CAPBSET_DROP, then capset). A cgo build
// cannot reach the C runtime's threads that way: it cuts the sets of one
// locked thread and starts this binary afresh from it (execve), handing
// ln over (brokerHandedEnv); root's execve gives the new image's every
// thread the capabilities of the bounding set it inherits, CAP_NET_ADMIN
// alone. Then KeepOnlyNetAdmin does not return; removePath, when not "",
// is the socket's path, which the new image removes when it is done
// (Handed).
func KeepOnlyNetAdmin(ln *net.UnixListener, removePath string) error {
	extra, err := extraCapabilities()
	if err != nil || !extra {
		return err
	}
	drop := boundingExtras()
	if builtWithCgo {
		return handOverBroker(ln, removePath, drop)
	}
	for _, c := range drop {
		if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0); e != 0 {
			return fmt.Errorf("broker: drop capability %d from the bounding set: %w", c, e)
		}
	}
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	bit := uint32(capNetAdminOnly)
	data := &[2]unix.CapUserData{{Effective: bit, Permitted: bit}}
	_, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(hdr)
	runtime.KeepAlive(data)
	if e != 0 {
		return fmt.Errorf("broker: keep CAP_NET_ADMIN alone: capset: %w", e)
	}
	if extra, err := extraCapabilities(); err != nil || extra {
		return fmt.Errorf("broker: capabilities other than CAP_NET_ADMIN remain (%v)", err)
	}
	return nil
}

// extraCapabilities reports whether the calling thread holds any
// capability but CAP_NET_ADMIN in its bounding, permitted, effective or
// inheritable set.
func extraCapabilities() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("broker: capget: %w", err)
	}
	lo := data[0].Permitted | data[0].Effective | data[0].Inheritable
	hi := data[1].Permitted | data[1].Effective | data[1].Inheritable
	return (uint64(hi)<<32|uint64(lo))&^capNetAdminOnly != 0 || len(boundingExtras()) > 0, nil
}

// boundingExtras lists the capabilities but CAP_NET_ADMIN that the
// bounding set holds.
func boundingExtras() []uintptr {
	var extras []uintptr
	for c := 0; c < 64; c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			break // past the kernel's last capability
		}
		if in == 1 && c != unix.CAP_NET_ADMIN {
			extras = append(extras, uintptr(c))
		}
	}
	return extras
}

// handOverBroker is KeepOnlyNetAdmin for a cgo build: on one locked
// thread it drops the capabilities drop from the bounding set, clears the
// inheritable set (which would otherwise pass through execve), and execs
// this binary with ln's descriptor named in brokerHandedEnv.
func handOverBroker(ln *net.UnixListener, removePath string, drop []uintptr) error {
	fd, err := dupListener(ln)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	// Never unlocked: this thread either execs or the process exits.
	runtime.LockOSThread()
	for _, c := range drop {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			return fmt.Errorf("broker: drop capability %d from the bounding set: %w", c, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("broker: capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("broker: clear the inheritable set: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	env := []string{brokerHandedEnv + "=" + strconv.Itoa(fd)}
	if removePath != "" {
		env = append(env, brokerRemoveEnv+"="+removePath)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, brokerHandedEnv+"=") && !strings.HasPrefix(kv, brokerRemoveEnv+"=") {
			env = append(env, kv)
		}
	}
	covhook.Flush() // a coverage build's counters; nothing otherwise
	err = syscall.Exec("/proc/self/exe", os.Args, env)
	return fmt.Errorf("broker: exec: %w", err)
}

// Handed returns the listening socket handOverBroker passed to this
// image and the path to remove when done ("" for none), or a nil listener
// when there is none. It refuses one in a process that holds any
// capability but CAP_NET_ADMIN: the hand-over exists to shed them.
func Handed() (*net.UnixListener, string, error) {
	s, ok := os.LookupEnv(brokerHandedEnv)
	if !ok {
		return nil, "", nil
	}
	remove := os.Getenv(brokerRemoveEnv)
	os.Unsetenv(brokerHandedEnv)
	os.Unsetenv(brokerRemoveEnv)
	if extra, err := extraCapabilities(); err != nil || extra {
		return nil, "", fmt.Errorf("broker: %s: refused in a process that holds capabilities other than CAP_NET_ADMIN (%v)", brokerHandedEnv, err)
	}
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return nil, "", fmt.Errorf("broker: %s=%q: not a descriptor", brokerHandedEnv, s)
	}
	ul, err := packetListener(fd, brokerHandedEnv+"="+s)
	return ul, remove, err
}
