//go:build linux

package nftgen

import (
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// send writes the batch in one sendmsg and waits for the kernel's answer.
// Only the last message asks for an acknowledgement; the kernel reports an
// error for any message that fails, and then applies none of the batch.
func (c *Conn) send(msgs []netlink.Message) error {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: c.NetNS})
	if err != nil {
		return fmt.Errorf("dial netlink: %w", err)
	}
	defer conn.Close()
	c.own.add(conn.PID())
	_ = conn.SetOption(netlink.ExtendedAcknowledge, true)
	total := 0
	for i := range msgs {
		msgs[i].Header.Length = 0
		msgs[i].Header.Sequence = 0
		msgs[i].Header.PID = 0
		msgs[i].Header.Flags &^= netlink.Acknowledge
		total += 16 + len(msgs[i].Data) + 3
	}
	// The last message before BATCH_END asks for the acknowledgement.
	last := len(msgs) - 2
	if last < 0 {
		return errors.New("empty batch")
	}
	msgs[last].Header.Flags |= netlink.Acknowledge
	if err := setBuffers(conn, total); err != nil {
		return err
	}
	if _, err := conn.SendMessages(msgs); err != nil {
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
