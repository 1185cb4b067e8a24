//go:build linux

package client

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Fds on which Exec gives the program the socket, as UCSPI-TCP's tcpclient.
const (
	ExecReadFD  = 6
	ExecWriteFD = 7
)

// ExecEnv returns env with the UCSPI-TCP variables for conn added.
func ExecEnv(env []string, conn *net.TCPConn) []string {
	r := conn.RemoteAddr().(*net.TCPAddr)
	l := conn.LocalAddr().(*net.TCPAddr)
	return append(env,
		"PROTO=TCP",
		"TCPREMOTEIP="+r.IP.String(),
		"TCPREMOTEPORT="+strconv.Itoa(r.Port),
		"TCPLOCALIP="+l.IP.String(),
		"TCPLOCALPORT="+strconv.Itoa(l.Port),
	)
}

// Exec replaces the process with program, the socket of conn on fds 6 (read)
// and 7 (write), after giving up privileges for inv. It returns only on
// error.
func Exec(conn *net.TCPConn, inv *Invoker, program string, args []string) error {
	path, err := exec.LookPath(program)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	f, err := conn.File()
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	fd := int(f.Fd())
	for _, target := range []int{ExecReadFD, ExecWriteFD} {
		if fd == target {
			// Already there: only let it survive exec.
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
				return fmt.Errorf("exec: socket on fd %d: %w", target, err)
			}
			continue
		}
		// dup3 without O_CLOEXEC: the copy survives exec.
		if err := unix.Dup3(fd, target, 0); err != nil {
			return fmt.Errorf("exec: dup socket to fd %d: %w", target, err)
		}
	}
	env := ExecEnv(os.Environ(), conn)
	conn.Close()
	if fd != ExecReadFD && fd != ExecWriteFD {
		f.Close()
	}
	if err := DropPrivileges(inv); err != nil {
		return err
	}
	err = syscall.Exec(path, append([]string{program}, args...), env)
	runtime.KeepAlive(f) // its finalizer must not close fd 6 or 7 first
	return fmt.Errorf("exec %s: %w", path, err)
}
