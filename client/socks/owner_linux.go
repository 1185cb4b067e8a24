//go:build linux

package socks

import (
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/seqknock/seqknock/hostconns"
	"github.com/seqknock/seqknock/internal/strictfile"
	"golang.org/x/sys/unix"
)

// SameUser returns a Server.Owner that admits the peers of uid alone: on
// a Unix socket the uid the kernel recorded at connect (SO_PEERCRED); on
// TCP the uid owning the socket at the other end of the connection, asked
// of the kernel over sock_diag by its exact address pair (only a local
// peer has one: a remote peer is never the owner).
func SameUser(uid int) func(c net.Conn) (bool, string, error) {
	return func(c net.Conn) (bool, string, error) {
		peer, err := PeerUID(c)
		if err != nil {
			return false, "", err
		}
		return peer == uid, fmt.Sprintf("uid %d", peer), nil
	}
}

// PeerUID is the uid at the other end of c.
func PeerUID(c net.Conn) (int, error) {
	switch c := c.(type) {
	case *net.UnixConn:
		raw, err := c.SyscallConn()
		if err != nil {
			return -1, fmt.Errorf("peer uid: %w", err)
		}
		var cred *unix.Ucred
		var serr error
		if err := raw.Control(func(fd uintptr) {
			cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		}); err != nil {
			return -1, fmt.Errorf("peer uid: %w", err)
		}
		if serr != nil {
			return -1, fmt.Errorf("peer uid: SO_PEERCRED: %w", serr)
		}
		return int(cred.Uid), nil
	case *net.TCPConn:
		uid, err := hostconns.Owner(0, c.RemoteAddr().(*net.TCPAddr).AddrPort(), c.LocalAddr().(*net.TCPAddr).AddrPort())
		if err != nil {
			return -1, fmt.Errorf("peer uid: %w", err)
		}
		return int(uid), nil
	}
	return -1, fmt.Errorf("peer uid: %T: neither TCP nor a Unix socket", c)
}

// LoadPassword reads a password file: its first line, 1 to 255 bytes
// (RFC 1929). A file that group or others may read, or that is not a
// regular file, is refused, as a key file is.
func LoadPassword(path string) (string, error) {
	f, err := strictfile.Open(path)
	if err != nil {
		return "", fmt.Errorf("load password: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("load password: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("load password: %s: readable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("load password: %s: %w", path, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" || len(line) > 255 {
		return "", fmt.Errorf("load password: %s: want one line of 1 to 255 bytes", path)
	}
	return line, nil
}
