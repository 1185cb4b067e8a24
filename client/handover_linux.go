//go:build linux

package client

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/seqknock/seqknock/internal/covhook"
	"golang.org/x/sys/unix"
)

// handedEnv names the descriptor of a connected socket handed over by
// HandOver to the next image of the binary.
const handedEnv = "SEQKNOCK_CONNECTED_FD"

// HandOver gives conn to a fresh image of this binary that holds no
// capability on any thread, for builds where they cannot be cleared
// in-process (cgo): from one locked thread with its sets cleared and
// PR_SET_NO_NEW_PRIVS set, it execs /proc/self/exe with args and
// SEQKNOCK_CONNECTED_FD naming the socket. It returns only on error. The
// variable needs no trust: it names a descriptor the process already
// holds, and Handed refuses it in a process that holds a capability.
func HandOver(conn *net.TCPConn, args []string) error {
	f, err := conn.File()
	if err != nil {
		return fmt.Errorf("drop privileges: %w", err)
	}
	fd := int(f.Fd())
	// Never unlocked: this thread either execs or the process exits.
	runtime.LockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData
	if err := unix.Capset(&hdr, &none[0]); err != nil {
		return fmt.Errorf("drop privileges: capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("drop privileges: no_new_privs: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		return fmt.Errorf("drop privileges: %w", err)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, handedEnv+"=") })
	env = append([]string{handedEnv + "=" + strconv.Itoa(fd)}, env...)
	covhook.Flush() // a coverage build's counters; nothing otherwise
	err = syscall.Exec("/proc/self/exe", args, env)
	runtime.KeepAlive(f)
	return fmt.Errorf("drop privileges: exec: %w", err)
}

// Handed returns the connection HandOver passed to this image, or nil when
// there is none. It refuses one in a process that holds a capability (it
// would then run its user's program or relay with it).
func Handed() (*net.TCPConn, error) {
	s, ok := os.LookupEnv(handedEnv)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(handedEnv)
	if os.Geteuid() != 0 {
		if held, err := hasCapabilities(); err != nil || held {
			return nil, fmt.Errorf("%s: refused in a process that holds capabilities (%v)", handedEnv, err)
		}
	}
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q: not a descriptor", handedEnv, s)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "handed socket")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s=%d: %w", handedEnv, fd, err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok || tc.RemoteAddr() == nil {
		c.Close()
		return nil, fmt.Errorf("%s=%d: not a connected TCP socket", handedEnv, fd)
	}
	return tc, nil
}
