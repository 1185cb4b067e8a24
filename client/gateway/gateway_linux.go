//go:build linux

package gateway

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/seqknock/seqknock/client"
	"golang.org/x/sys/unix"
)

// Gateway serves the redirected connections of one config.
type Gateway struct {
	Config *Config
	// Dialers knock on each destination (by its address and port).
	Dialers map[netip.AddrPort]*client.Dialer
	Log     *slog.Logger
	// Poll is how often the table is checked besides nftables' own
	// notifications (default 5 s).
	Poll time.Duration
	// Ready, when set, is called once the table is in force and the
	// listeners take connections.
	Ready func()
}

// NewDialers resolves each destination's settings from the client config:
// its [[host]] entry (by the destination's host name, then its address),
// with flags' timeouts. Every destination must have a key. Slots are
// counted in this process, shared by all connections.
func NewDialers(gc *Config, cc *client.Config, f client.Flags) (map[netip.AddrPort]*client.Dialer, error) {
	slots := new(client.SlotStore)
	out := map[netip.AddrPort]*client.Dialer{}
	for i, d := range gc.Dests {
		f.Alias = d.Host
		f.IPv4, f.IPv6 = d.Addr.Addr().Is4(), d.Addr.Addr().Is6()
		dd, err := client.Resolve(cc, f, d.Addr.Addr().String(), d.Addr.Port())
		if err != nil {
			return nil, fmt.Errorf("%s: destination[%d] %s: %w", gc.Path, i, d.Addr, err)
		}
		dd.Reserve = slots.Reserve
		out[d.Addr] = dd
	}
	return out, nil
}

// Run installs the table, serves until ctx ends and removes the table.
// Connections being relayed when ctx ends are closed.
func (g *Gateway) Run(ctx context.Context) error {
	rs := Build(g.Config)
	port := strconv.Itoa(int(g.Config.ListenPort))
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, fam := range []struct{ network, addr string }{{"tcp4", "0.0.0.0"}, {"tcp6", "[::]"}} {
		if !slices.ContainsFunc(g.Config.Dests, func(d Destination) bool { return d.Addr.Addr().Is4() == (fam.network == "tcp4") }) {
			continue
		}
		ln, err := (&net.ListenConfig{Control: g.markSocket}).Listen(ctx, fam.network, fam.addr+":"+port)
		if err != nil {
			return fmt.Errorf("gateway: listen: %w", err)
		}
		lns = append(lns, ln)
	}
	if err := Install(rs); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer func() {
		if err := Remove(rs); err != nil {
			g.Log.Error("table not removed", "table", "inet "+rs.Table.Name, "err", err)
		} else {
			g.Log.Info("table removed", "table", "inet "+rs.Table.Name)
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	poll := cmp.Or(g.Poll, 5*time.Second)
	var wg sync.WaitGroup
	wg.Go(func() {
		Keep(ctx, rs, poll,
			func() { g.Log.Warn("table changed by someone else: written again", "table", "inet "+rs.Table.Name) },
			func(err error) { g.Log.Error("table check", "err", err) })
	})
	var conns sync.Map // *net.TCPConn -> struct{}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		// The accept loops count in wg too, so each connection's Go
		// happens while the count is above zero.
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					errc <- err
					return
				}
				tc := c.(*net.TCPConn)
				conns.Store(tc, struct{}{})
				wg.Go(func() {
					defer conns.Delete(tc)
					g.serve(ctx, tc, &conns)
				})
			}
		})
	}
	g.Log.Info("gateway ready", "listen_port", g.Config.ListenPort, "table", "inet "+rs.Table.Name, "destinations", len(g.Config.Dests))
	if g.Ready != nil {
		g.Ready()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("gateway: accept: %w", err)
	}
	cancel()
	for _, ln := range lns {
		ln.Close()
	}
	conns.Range(func(k, _ any) bool { k.(*net.TCPConn).Close(); return true })
	wg.Wait()
	return err
}

// markSocket sets the listeners' SO_MARK on a socket before it binds.
func (g *Gateway) markSocket(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(g.Config.ListenMark))
	})
	if err = cmp.Or(err, serr); err != nil {
		return fmt.Errorf("set SO_MARK: %w", err)
	}
	return nil
}

// serve knocks on lan's original destination and relays.
func (g *Gateway) serve(ctx context.Context, lan *net.TCPConn, conns *sync.Map) {
	defer lan.Close()
	src := lan.RemoteAddr().(*net.TCPAddr).AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst, err := OriginalDst(lan)
	if err != nil {
		g.Log.Warn("refused", "src", src, "reason", err)
		return
	}
	d := g.Config.Lookup(dst)
	if d == nil {
		g.Log.Warn("refused", "src", src, "dst", dst, "reason", "not a destination of the gateway")
		return
	}
	host := cmp.Or(d.Host, dst.Addr().String())
	if !d.Allowed(src.Addr()) {
		g.Log.Warn("refused", "src", src, "dst", dst, "host", host, "reason", "source not allowed")
		return
	}
	dialer := g.Dialers[dst]
	if dialer == nil {
		g.Log.Warn("refused", "src", src, "dst", dst, "host", host, "reason", "no dialer")
		return
	}
	start := time.Now()
	srv, err := dialer.Dial(ctx, dst.Addr().String(), dst.Port())
	if err != nil {
		g.Log.Warn("knock failed", "src", src, "dst", dst, "host", host, "err", err)
		return
	}
	conns.Store(srv, struct{}{})
	defer conns.Delete(srv)
	defer srv.Close()
	g.Log.Info("connect", "src", src, "dst", dst, "host", host, "via", srv.LocalAddr().String(), "knock_ms", time.Since(start).Milliseconds())
	err = client.Relay(srv, lan, lan)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		g.Log.Info("closed", "src", src, "dst", dst, "host", host, "err", err)
		return
	}
	g.Log.Info("closed", "src", src, "dst", dst, "host", host)
}

// OriginalDst is the destination a redirected connection was sent to,
// from conntrack (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST).
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	is4 := c.LocalAddr().(*net.TCPAddr).IP.To4() != nil
	level, opt := unix.SOL_IPV6, ip6tSOOriginalDst
	if is4 {
		level, opt = unix.SOL_IP, unix.SO_ORIGINAL_DST
	}
	// struct sockaddr_in or sockaddr_in6: the family, the port (network
	// order), then the IPv4 address, or the flow info and the IPv6 address.
	var sa [unix.SizeofSockaddrInet6]byte
	n := uint32(len(sa))
	var errno unix.Errno
	err = raw.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(opt),
			uintptr(unsafe.Pointer(&sa[0])), uintptr(unsafe.Pointer(&n)), 0)
	})
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	port := binary.BigEndian.Uint16(sa[2:4])
	if is4 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), port), nil
	}
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(sa[8:24])), port), nil
}

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h),
// which x/sys does not define.
const ip6tSOOriginalDst = 80
