//go:build linux

package nftgen

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// quietMin is the batch size from which send leaves the nftables
// notification group while the kernel takes the batch (see quietly): about
// 2,000 elements. Smaller batches (the sessions refills, small configs)
// cost the kernel little to announce and leave no gap in the watch.
const quietMin = 64 << 10

// watchers are the sockets of this Conn's running Watches, each with the
// function that reports a change on its channel.
type watchers struct {
	mu sync.Mutex
	m  map[*netlink.Conn]func()
}

func (w *watchers) add(conn *netlink.Conn, notify func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[*netlink.Conn]func(){}
	}
	w.m[conn] = notify
}

func (w *watchers) remove(conn *netlink.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, conn)
}

func (w *watchers) list() []*netlink.Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*netlink.Conn, 0, len(w.m))
	for c := range w.m {
		out = append(out, c)
	}
	return out
}

// notify reports a change on conn's Watch if it still runs (its channel
// closes only after it is removed).
func (w *watchers) notify(conn *netlink.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n, ok := w.m[conn]; ok {
		n()
	}
}

// quietly runs send, a large batch's round trip on conn (the caller holds
// sendMu), with this Conn's
// watch sockets out of the NFNLGRP_NFTABLES group.
//
// Why: while any socket on the host (in any network namespace: the
// kernel keeps one listener mask per netlink protocol) is in that group,
// the kernel builds a notification for every element a transaction adds,
// each in its own skb of a page, all held until the commit ends. With our
// own watch listening, a cold sync of 240,000 elements took 2.6 to 3.6 s
// in the kernel instead of 0.32 to 0.37 s, and a rotation of 80,000 took
// 161 to 167 ms instead of 64 to 65 ms (BenchmarkApplySplit). Watch drops
// those notifications anyway (they are our own).
//
// Nothing is missed meanwhile: the ruleset's generation id, read before
// leaving and after joining again, counts every transaction committed in
// the namespace. If it moved by anything but our own commit, someone else
// committed while the watches were deaf, and each of them reports a change
// (the daemon then repairs whole, as for any foreign change). A watch
// socket that cannot join again is closed, which ends its Watch: the
// caller watches again and repairs.
func (c *Conn) quietly(conn *netlink.Conn, b batch, send func() error) error {
	ws := c.watch.list()
	if len(ws) == 0 || b.size() < quietMin {
		return send()
	}
	before, err := genID(conn)
	if err != nil {
		return send() // announced as usual: slower, nothing missed
	}
	var left []*netlink.Conn
	for _, w := range ws {
		if w.LeaveGroup(unix.NFNLGRP_NFTABLES) == nil {
			left = append(left, w)
		}
	}
	if c.inGap != nil {
		c.inGap()
	}
	sendErr := send()
	for _, w := range left {
		if err := w.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
			w.Close()
		}
	}
	want := before
	if sendErr == nil {
		want = nextGen(before)
	}
	// send closes a socket that failed; read the id on a fresh one.
	after, err := c.genLocked()
	if err != nil || after != want {
		for _, w := range left {
			c.watch.notify(w)
		}
	}
	return sendErr
}

// nextGen is the generation id after one commit (the kernel skips 0).
func nextGen(g uint32) uint32 {
	if g+1 == 0 {
		return 1
	}
	return g + 1
}

// genLocked reads the ruleset's generation id on the batch socket; the
// caller holds sendMu.
func (c *Conn) genLocked() (uint32, error) {
	conn, err := c.senderLocked()
	if err != nil {
		return 0, err
	}
	return genID(conn)
}

// genID asks the kernel for the namespace's nftables generation id
// (NFT_MSG_GETGEN): it goes up by one at every committed transaction.
func genID(conn *netlink.Conn) (uint32, error) {
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, fmt.Errorf("get generation: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN) || len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("get generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, fmt.Errorf("get generation: no generation id in the answer")
}
