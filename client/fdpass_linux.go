//go:build linux

package client

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// SendFD hands conn's socket to the process at the other end of the unix
// socket sock (for OpenSSH's ProxyUseFdpass: ssh receives it on the
// ProxyCommand's stdout), as one byte carrying SCM_RIGHTS.
func SendFD(sock *os.File, conn *net.TCPConn) error {
	f, err := conn.File()
	if err != nil {
		return fmt.Errorf("fdpass: %w", err)
	}
	defer f.Close()
	rights := unix.UnixRights(int(f.Fd()))
	if err := unix.Sendmsg(int(sock.Fd()), []byte{0}, rights, nil, 0); err != nil {
		return fmt.Errorf("fdpass: send on %s (stdout must be the unix socket ssh gives a ProxyUseFdpass command): %w", sock.Name(), err)
	}
	return nil
}
