//go:build linux

package nftgen

import (
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// send writes the batch in one sendmsg, its segments as the iovecs, and
// waits for the kernel's answer (see batchWriter).
func (c *Conn) send(b batch) error {
	if len(b.segs) == 0 {
		return errors.New("empty batch")
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	conn, err := c.senderLocked()
	if err != nil {
		return err
	}
	return c.quietly(conn, b, func() error {
		if err := c.sendOn(conn, b); err != nil {
			// A socket that failed mid-exchange may hold a stale answer.
			c.sender.Close()
			c.sender = nil
			return err
		}
		return nil
	})
}

// senderLocked returns the socket batches go out on, dialling it once.
func (c *Conn) senderLocked() (*netlink.Conn, error) {
	if c.sender != nil {
		return c.sender, nil
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: c.NetNS})
	if err != nil {
		return nil, fmt.Errorf("dial netlink: %w", err)
	}
	c.own.add(conn.PID())
	_ = conn.SetOption(netlink.ExtendedAcknowledge, true)
	c.sender = conn
	return conn, nil
}

// senderPID is the netlink port id our batches go out from.
func (c *Conn) senderPID() (uint32, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	conn, err := c.senderLocked()
	if err != nil {
		return 0, err
	}
	return conn.PID(), nil
}

func (c *Conn) sendOn(conn *netlink.Conn, b batch) error {
	total := b.size()
	if err := setBuffers(conn, total); err != nil {
		return err
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var n int
	var serr error
	err = raw.Write(func(fd uintptr) bool {
		n, serr = unix.SendmsgBuffers(int(fd), b.segs, nil, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}, 0)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err == nil && n != total {
		err = fmt.Errorf("sent %d of %d bytes", n, total)
	}
	if err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	for {
		replies, err := conn.Receive()
		if err != nil {
			return fmt.Errorf("kernel refused the batch, nothing changed: %w", err)
		}
		for _, r := range replies {
			if r.Header.Type == netlink.Error {
				return nil // errno 0: Receive turns any other errno into err
			}
		}
	}
}

func setBuffers(conn *netlink.Conn, batch int) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		snd := max(batch+64*1024, 256*1024)
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, snd); e != nil {
			// Without CAP_NET_ADMIN the force option is refused; the
			// plain one is capped by net.core.wmem_max.
			if e2 := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, snd); e2 != nil {
				serr = fmt.Errorf("set send buffer: %w", e2)
			}
		}
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20)
	})
	if err != nil {
		return err
	}
	return serr
}
