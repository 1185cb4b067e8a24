//go:build linux

package broker

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Server lends one privilege: it sets the initial sequence number of a TCP
// socket its caller sends it, for root and the members of one group.
type Server struct {
	// GID is the group whose members may ask (root always may).
	GID int
	// GroupName names it in refusals.
	GroupName string
	// ReadTimeout bounds the wait for each request of a connection.
	ReadTimeout time.Duration
	// MaxInFlight bounds the connections served at once; MaxPerUID those
	// of one user. A connection beyond either is answered "busy" and
	// closed at once.
	MaxInFlight, MaxPerUID int
	// IdleExit, when set, ends Serve once no connection has been open for
	// that long (socket activation starts the broker again on demand).
	IdleExit time.Duration
	Log      *slog.Logger

	// apply sets the ISN of a checked socket; nil means applyISN.
	apply func(fd int, isn uint32) error
	// noBind leaves the socket unbound before repair mode: only a
	// benchmark's baseline sets it, never a served broker.
	noBind bool

	mu       sync.Mutex
	inFlight int
	perUID   map[uint32]int
	idle     *time.Timer
	// quiet rate-limits the log lines of refusals (a flood must not
	// flood the journal).
	logged     time.Time
	logBudget  int
	suppressed int
}

func (b *Server) defaults() {
	b.ReadTimeout = cmp.Or(b.ReadTimeout, 2*time.Second)
	b.MaxInFlight = cmp.Or(b.MaxInFlight, 256)
	b.MaxPerUID = cmp.Or(b.MaxPerUID, 32)
	b.Log = cmp.Or(b.Log, slog.New(slog.DiscardHandler))
	b.GroupName = cmp.Or(b.GroupName, "gid "+strconv.Itoa(b.GID))
	if b.perUID == nil {
		b.perUID = map[uint32]int{}
	}
}

// Serve answers requests on ln until ctx ends or (with IdleExit) the
// broker has been idle that long, and returns nil then. It closes ln when
// it returns; it never removes the socket's file. Each connection is
// served in a goroutine of its own (the package doc says why).
func (b *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	b.defaults()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if b.IdleExit > 0 {
		b.mu.Lock()
		b.idle = time.AfterFunc(b.IdleExit, cancel)
		b.mu.Unlock()
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.AcceptUnix()
		switch {
		case ctx.Err() != nil:
			if c != nil {
				c.Close()
			}
			return nil
		case errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM):
			b.Log.Warn("broker accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		case err != nil:
			return fmt.Errorf("broker: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.serveConn(c)
		}()
	}
}

// dupListener returns a descriptor of ln's socket of its own.
func dupListener(ln *net.UnixListener) (int, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := rc.Control(func(s uintptr) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return -1, cerr
	}
	return fd, err
}

// admit takes a slot for a connection of uid, or says why not.
func (b *Server) admit(uid uint32) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inFlight >= b.MaxInFlight {
		return "busy: too many requests in flight, try again"
	}
	if b.perUID[uid] >= b.MaxPerUID {
		return fmt.Sprintf("busy: too many requests in flight from uid %d, try again", uid)
	}
	b.inFlight++
	b.perUID[uid]++
	if b.idle != nil {
		b.idle.Stop()
	}
	return ""
}

func (b *Server) release(uid uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inFlight--
	if b.perUID[uid]--; b.perUID[uid] == 0 {
		delete(b.perUID, uid)
	}
	if b.inFlight == 0 && b.idle != nil {
		b.idle.Reset(b.IdleExit)
	}
}

// refusedLog logs a refusal, at most 10 lines a second; the lines left out
// are counted in the next one.
func (b *Server) refusedLog(why string, args ...any) {
	b.mu.Lock()
	now := time.Now()
	if now.Sub(b.logged) >= time.Second {
		b.logged, b.logBudget = now, 10
	}
	if b.logBudget == 0 {
		b.suppressed++
		b.mu.Unlock()
		return
	}
	b.logBudget--
	if b.suppressed > 0 {
		args = append(args, "not_logged_before", b.suppressed)
		b.suppressed = 0
	}
	b.mu.Unlock()
	b.Log.Info("broker refused", append([]any{"why", why}, args...)...)
}

// allowed says whether the peer of cfd, with credentials cred, may use
// the broker: root, or a member of the group (its effective gid or one of
// its supplementary groups, as they were when it connected; those are
// read, SO_PEERGROUPS, only when the uid and gid do not settle it).
func (b *Server) allowed(cfd int, cred *unix.Ucred) (bool, error) {
	if cred.Uid == 0 || cred.Gid == uint32(b.GID) {
		return true, nil
	}
	groups, err := peerGroups(cfd)
	if err != nil {
		return false, err
	}
	for _, g := range groups {
		if g == uint32(b.GID) {
			return true, nil
		}
	}
	return false, nil
}

// serveConn serves one connection (closed when it returns): the caller's
// credentials, the admission, the greeting, then up to brokerMaxRequests
// requests, each waited for up to ReadTimeout.
func (b *Server) serveConn(c *net.UnixConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(b.ReadTimeout))
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	var cred *unix.Ucred
	var ok bool
	var cerr, gerr error
	if err := rc.Control(func(fd uintptr) {
		if cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); cerr == nil {
			ok, gerr = b.allowed(int(fd), cred)
		}
	}); err != nil || cerr != nil {
		b.refusedLog("peer credentials", "err", errors.Join(err, cerr))
		return
	}
	if why := b.admit(cred.Uid); why != "" {
		c.Write([]byte(brokerRefused + why))
		b.refusedLog(why, "uid", cred.Uid, "pid", cred.Pid)
		return
	}
	defer b.release(cred.Uid)
	if !ok {
		if gerr != nil {
			b.refusedLog("peer groups", "uid", cred.Uid, "pid", cred.Pid, "err", gerr)
		}
		why := fmt.Sprintf("uid %d%s%s", cred.Uid, brokerNotMember, b.GroupName)
		c.Write([]byte(brokerRefused + why))
		b.refusedLog(why, "uid", cred.Uid, "pid", cred.Pid)
		return
	}
	// The greeting: a caller knows it will be served before it spends a
	// knock. A check ends here, with the end of its connection.
	if _, err := c.Write([]byte(brokerOK)); err != nil {
		return
	}
	buf := make([]byte, brokerPortLen)
	oob := make([]byte, unix.CmsgSpace(4*brokerMaxFDs))
	for range brokerMaxRequests {
		c.SetDeadline(time.Now().Add(b.ReadTimeout))
		n, oobn, flags, err := readMsg(c, buf, oob)
		fds, perr := rightsOf(oob[:oobn])
		if err != nil || n == 0 && oobn == 0 {
			closeAll(fds)
			// EOF, the deadline, or a broken peer: nothing to answer.
			if err != nil && err != io.EOF && !errors.Is(err, unix.ECONNRESET) && !errors.Is(err, os.ErrDeadlineExceeded) {
				b.refusedLog("read", "uid", cred.Uid, "pid", cred.Pid, "err", err)
			}
			return
		}
		ans := b.handle(buf[:n], fds, flags, perr)
		closeAll(fds)
		if ans != brokerOK {
			b.refusedLog(ans, "uid", cred.Uid, "pid", cred.Pid)
		}
		if _, err := c.Write([]byte(ans)); err != nil {
			return
		}
	}
}

// handle answers one request: the message bytes and the descriptors it
// carried (all closed by the caller afterwards, whatever the answer).
func (b *Server) handle(msg []byte, fds []int, flags int, rightsErr error) string {
	switch {
	case len(msg) < len(brokerMagic) || string(msg[:len(brokerMagic)]) != brokerMagic:
		return brokerRefused + "not a seqknock broker request"
	case flags&unix.MSG_TRUNC != 0:
		return brokerRefused + "request too long"
	case flags&unix.MSG_CTRUNC != 0 || len(fds) > 1:
		return brokerRefused + "send exactly one socket"
	case rightsErr != nil:
		return brokerRefused + rightsErr.Error()
	case len(msg) == len(brokerMagic) && len(fds) == 0:
		// The check a client makes before it spends a knock.
		return brokerOK
	case len(msg) != brokerRequestLen && len(msg) != brokerPortLen:
		return brokerRefused + "malformed request"
	case len(fds) == 0:
		return brokerRefused + "no socket sent"
	}
	isn := binary.BigEndian.Uint32(msg[len(brokerMagic):])
	var sport uint16
	if len(msg) == brokerPortLen {
		sport = binary.BigEndian.Uint16(msg[brokerRequestLen:])
	}
	if sport != 0 && sport < brokerMinPort {
		// No knock's port is privileged (ISN-v1 reserves 1024-65535), and
		// the broker binds no port its caller could not bind itself.
		return brokerRefused + "source port " + strconv.Itoa(int(sport)) + " is below 1024"
	}
	if err := checkUnconnectedTCP(fds[0]); err != nil {
		return brokerRefused + err.Error()
	}
	if !b.noBind {
		if err := bindSource(fds[0], sport); err != nil {
			if sport != 0 && errors.Is(err, unix.EADDRINUSE) {
				return brokerPortInUse + strconv.Itoa(int(sport))
			}
			return brokerRefused + err.Error()
		}
	}
	apply := b.apply
	if apply == nil {
		apply = applyISN
	}
	if err := apply(fds[0], isn); err != nil {
		return brokerRefused + err.Error()
	}
	return brokerOK
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// rightsOf returns the descriptors of every SCM_RIGHTS message in oob.
func rightsOf(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var fds []int
	var bad error
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			bad = errors.New("unexpected control message")
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = fmt.Errorf("control message: %w", err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, bad
}

// peerGroups reads SO_PEERGROUPS, growing the buffer as the kernel asks.
func peerGroups(fd int) ([]uint32, error) {
	n := 64
	for {
		buf := make([]uint32, n)
		size := uint32(4 * n)
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if e == unix.ERANGE && int(size/4) > n && n < 1<<17 {
			n = int(size / 4)
			continue
		}
		if e != 0 {
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", e)
		}
		return buf[:size/4], nil
	}
}

// tcpClose is TCP_CLOSE, the state of a TCP socket that is neither
// connected, connecting nor listening.
const tcpClose = 7

// tcpSynSent is TCP_SYN_SENT: a connect() with a handshake under way.
const tcpSynSent = 2

var tcpStates = map[uint8]string{1: "connected", 2: "connecting", 3: "connecting", 4: "connected", 5: "connected",
	6: "connected", 8: "connected", 9: "connected", 10: "listening", 11: "connected", 12: "connecting"}

// checkUnconnectedTCP refuses anything but an IPv4 or IPv6 TCP socket that
// is neither connected, connecting nor listening.
func checkUnconnectedTCP(fd int) error {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err == unix.ENOTSOCK {
		return errors.New("not a socket")
	}
	if err != nil || dom != unix.AF_INET && dom != unix.AF_INET6 {
		return errors.New("not an IPv4 or IPv6 socket")
	}
	typ, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	proto, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err1 != nil || err2 != nil || typ != unix.SOCK_STREAM || proto != unix.IPPROTO_TCP {
		return errors.New("not a TCP socket")
	}
	return checkClosedState(fd)
}

func checkClosedState(fd int) error {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return fmt.Errorf("TCP_INFO: %w", err)
	}
	if info.State != tcpClose {
		s := tcpStates[info.State]
		if s == "" {
			s = "in use"
		}
		return fmt.Errorf("the socket is %s: send one that is not connected", s)
	}
	return nil
}

// The range the broker picks a socket's source port from when the
// request names none (a client from before pickPort): the kernel's
// default ephemeral range (the broker cannot read the caller's network
// namespace's own).
const (
	brokerPortLow  = 32768
	brokerPortHigh = 60999
	// brokerBindTries bounds the ports tried at random before the whole
	// range is tried in turn; each try fails only where that port is in
	// use here.
	brokerBindTries = 256
)

// bindSource binds fd, an unconnected TCP socket its caller still holds,
// to source port sport (when 0, a free one it picks) before repair mode,
// with the kernel's normal conflict checks and never port 0; a socket
// that comes bound to a port is refused, one bound to an address alone
// (IP_BIND_ADDRESS_NO_PORT) keeps its address. The package doc says why.
func bindSource(fd int, sport uint16) error {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		if a.Port != 0 {
			return fmt.Errorf("the socket is bound (port %d): send an unbound one, the broker binds it", a.Port)
		}
	case *unix.SockaddrInet6:
		if a.Port != 0 {
			return fmt.Errorf("the socket is bound (port %d): send an unbound one, the broker binds it", a.Port)
		}
	default:
		return errors.New("not an IPv4 or IPv6 socket")
	}
	// The port is the socket's alone: a port another socket holds (with
	// SO_REUSEADDR, one not listening yet; with SO_REUSEPORT, one of the
	// same user) is refused, since a listen() in the window would share
	// it with that socket once it listens.
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 0); err != nil {
			return fmt.Errorf("clear SO_REUSEADDR/SO_REUSEPORT: %w", err)
		}
	}
	bind := func(port int) error {
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			a.Port = port
		case *unix.SockaddrInet6:
			a.Port = port
		}
		return unix.Bind(fd, sa)
	}
	if sport != 0 {
		if err := bind(int(sport)); err != nil {
			return fmt.Errorf("bind source port %d: %w", sport, err)
		}
		return nil
	}
	const span = brokerPortHigh - brokerPortLow + 1
	for range brokerBindTries {
		err = bind(brokerPortLow + rand.IntN(span))
		if err != unix.EADDRINUSE {
			break
		}
	}
	// Random tries fail only where most of the range is in use (someone
	// holding nearly every port): then every port is tried once, from a
	// random one on, so that a port left free is found as the kernel's
	// own pick would find it.
	if err == unix.EADDRINUSE {
		off := rand.IntN(span)
		for i := range span {
			err = bind(brokerPortLow + (off+i)%span)
			if err != unix.EADDRINUSE {
				break
			}
		}
	}
	if err == unix.EADDRINUSE {
		return fmt.Errorf("no free source port here in %d-%d", brokerPortLow, brokerPortHigh)
	}
	if err != nil {
		return fmt.Errorf("bind a source port: %w", err)
	}
	return nil
}

// tcpSendQueue is TCP_SEND_QUEUE, the TCP_REPAIR_QUEUE value that selects
// the send queue; x/sys/unix does not define it.
const tcpSendQueue = 2

// applyISN is the broker's TCP_REPAIR sequence on a socket bindSource
// bound, which its caller still holds and may use meanwhile: the state is
// checked again with repair mode on and after it is off (no window
// probe), and a socket found in use is disarmed, never handed back in
// repair mode (the package doc says why).
func applyISN(fd int, isn uint32) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return fmt.Errorf("set TCP_REPAIR: %w", err)
	}
	return applyInRepair(fd, isn)
}

// applyInRepair is the rest of applyISN, on a socket in repair mode.
func applyInRepair(fd int, isn uint32) error {
	err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue)
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ, int(int32(isn)))
	}
	if err == nil {
		err = checkClosedState(fd)
	}
	if err != nil {
		return disarm(fd, fmt.Errorf("set ISN: %w", err))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP); err != nil {
		return disarm(fd, fmt.Errorf("set TCP_REPAIR off: %w", err))
	}
	if err := checkClosedState(fd); err != nil {
		return disarm(fd, fmt.Errorf("set ISN: %w", err))
	}
	return nil
}

// disarmTries bounds disarm's rounds against a caller that connects or
// listens again in each of them.
const disarmTries = 1000

// disarm takes back what the caller did with its socket while it was (or
// may have been) in repair mode: with repair mode on, it disconnects the
// socket (no FIN, no RST; a listening one stops listening), then turns
// repair mode off without a window probe, until the socket is found
// closed (or connecting, by a connect() with a real handshake made after
// repair mode was off). It never leaves the socket in repair mode.
func disarm(fd int, err error) error {
	sa := unix.RawSockaddr{Family: unix.AF_UNSPEC}
	for range disarmTries {
		// Fails on a listening socket, which the disconnect stops and the
		// next round finds closed.
		unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON)
		unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
		if unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP) != nil {
			continue
		}
		info, ierr := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if ierr == nil && (info.State == tcpClose || info.State == tcpSynSent) {
			return fmt.Errorf("%w; the socket was disconnected", err)
		}
	}
	// A caller that won every round: its socket is out of repair mode;
	// what it holds is a connection it made while repair mode was on.
	return fmt.Errorf("%w; the socket could not be disconnected", err)
}

// Listen listens on path, a Unix SOCK_SEQPACKET socket of mode 0660
// and group gid, in a directory it makes (0755) if missing. An old socket
// at path is replaced; anything else there (a symbolic link, a file) is
// refused, as is a directory that others may write to. Closing the
// listener leaves the file: its maker removes it when the broker is done.
func Listen(path string, gid int) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return nil, fmt.Errorf("broker: %s: must be a directory that only its owner may write to", dir)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("broker: %s exists and is not a socket (%v)", path, fi.Mode().Type())
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	// Made with no access at all, then opened to the group: no moment in
	// which anyone else could connect.
	old := unix.Umask(0o777)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	err = os.Chown(path, -1, gid)
	if err == nil {
		err = os.Chmod(path, 0o660)
	}
	if err != nil {
		// A socket no member may use is no broker: not left behind.
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("broker: %w", err)
	}
	return ln, nil
}

// ActivatedListener returns the socket systemd passed (LISTEN_PID,
// LISTEN_FDS = 1, descriptor 3), or nil when there is none.
func ActivatedListener() (*net.UnixListener, error) {
	pid, fds := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	if pid == "" || fds == "" {
		return nil, nil
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if pid != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	if fds != "1" {
		return nil, fmt.Errorf("broker: LISTEN_FDS=%s: want one socket", fds)
	}
	return packetListener(3, "activated socket")
}

// packetListener is the listening Unix SOCK_SEQPACKET socket at fd, which
// it takes over (closing it on exec). Closing the listener leaves the
// socket's file.
func packetListener(fd int, name string) (*net.UnixListener, error) {
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("broker: %s: %w", name, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok || ul.Addr().Network() != "unixpacket" {
		l.Close()
		return nil, fmt.Errorf("broker: %s: want a Unix SOCK_SEQPACKET socket (ListenSequentialPacket=)", name)
	}
	return ul, nil
}
