//go:build linux

package client

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
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

// ExitStatus is Exec's error when the program did not exit with status 0:
// its exit code, or the signal that ended it.
type ExitStatus struct {
	Code   int
	Signal syscall.Signal // 0 unless a signal ended the program
}

func (e *ExitStatus) Error() string {
	if e.Signal != 0 {
		return fmt.Sprintf("program ended by signal %d (%v)", int(e.Signal), e.Signal)
	}
	return fmt.Sprintf("program exited with status %d", e.Code)
}

// Exec runs program with the socket of conn on fds 6 (read) and 7 (write),
// waits for it and returns nil or its *ExitStatus. The caller gives up its
// privileges first (DropPrivileges): the program runs with the process's
// credentials and inherits no capability.
//
// The socket reaches fds 6 and 7 only in the new program: fork/exec with
// an explicit file table (fds 3 to 5 closed, the socket at 6 and 7), so no
// descriptor of this process is ever overwritten, whatever numbers the Go
// runtime, the slot lock or inherited files hold here. Signals that would
// end a wrapper (INT, TERM, HUP, QUIT, USR1, USR2, WINCH) are passed on to
// the program.
func Exec(conn *net.TCPConn, program string, args []string) error {
	path, err := exec.LookPath(program)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	f, err := conn.File()
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   append([]string{program}, args...),
		Env:    ExecEnv(os.Environ(), conn),
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		// Entry i is fd 3+i; nil entries are closed in the program.
		ExtraFiles: []*os.File{ExecReadFD - 3: f, ExecWriteFD - 3: f},
	}
	// Start from a thread whose own capability sets are checked empty:
	// the program gets the credentials of the thread that forks it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if os.Geteuid() != 0 {
		if held, err := hasCapabilities(); err != nil || held {
			f.Close()
			return fmt.Errorf("exec: capabilities still held; refusing to start %s (%v)", path, err)
		}
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	err = cmd.Start()
	f.Close()
	conn.Close()
	if err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	signal.Stop(sigs) // no signal is sent on sigs once it returns
	close(sigs)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &ExitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
		}
		return &ExitStatus{Code: ee.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}
