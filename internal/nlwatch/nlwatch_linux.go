//go:build linux

package nlwatch

import (
	"context"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Join opens a NETLINK_NETFILTER socket in the network namespace netns
// (0: this one) and joins its multicast group.
func Join(netns int, group uint32) (*netlink.Conn, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("dial netlink: %w", err)
	}
	if err := conn.JoinGroup(group); err != nil {
		conn.Close()
		return nil, fmt.Errorf("join group %d: %w", group, err)
	}
	return conn, nil
}

// Run runs loop in a goroutine, handing it notify, and returns the channel
// notify signals. notify never blocks: a signal not yet taken absorbs the
// next. conn is closed when ctx ends (which ends loop's reads) or when loop
// returns, whichever comes first; then the channel is closed. Nothing of a
// watch outlives its loop: a caller that watches again after the channel
// closed, with the same ctx, leaves no socket in the group and no goroutine
// behind.
func Run(ctx context.Context, conn *netlink.Conn, loop func(notify func())) <-chan struct{} {
	out := make(chan struct{}, 1)
	notify := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		conn.Close()
	}()
	go func() {
		defer close(out)
		defer close(done)
		loop(notify)
	}()
	return out
}
