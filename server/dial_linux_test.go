//go:build linux

package server

import (
	"net"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// dialISN connects to addr:port with one SYN whose sequence number is isn,
// and no retry. It sets the ISN as the client does (TCP_REPAIR, the send
// queue's sequence, TCP_REPAIR off, then connect), written out here so the
// server's tests need not reach into package client to send a raw knock.
func dialISN(addr string, port uint16, isn uint32, timeout time.Duration) (*net.TCPConn, error) {
	control := func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, opt := range []struct{ name, value int }{
				{unix.TCP_REPAIR, unix.TCP_REPAIR_ON},
				{unix.TCP_REPAIR_QUEUE, 2}, // TCP_SEND_QUEUE
				{unix.TCP_QUEUE_SEQ, int(int32(isn))},
				{unix.TCP_REPAIR, unix.TCP_REPAIR_OFF},
			} {
				if serr == nil {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_TCP, opt.name, opt.value)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
	d := net.Dialer{Timeout: timeout, Control: control}
	c, err := d.Dial("tcp", net.JoinHostPort(addr, strconv.Itoa(int(port))))
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
