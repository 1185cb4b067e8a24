//go:build linux

package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The broker's wire format (see doc.go, "The broker").
const (
	brokerMagic      = "skb1"
	brokerRequestLen = 8   // magic, u32be ISN
	brokerMaxReply   = 256 // bytes of one answer
	brokerOK         = "ok"
	brokerRefused    = "refused: "
	// brokerNotMember ends the refusal of a caller outside the group,
	// followed by the group's name: the client names it in its advice.
	brokerNotMember = " is neither root nor in group "
	// brokerMaxFDs is how many descriptors one read makes room for, so
	// that a request carrying more than one is seen (and every one of them
	// closed) rather than cut by the kernel.
	brokerMaxFDs = 8
	// brokerMaxRequests bounds the requests of one connection.
	brokerMaxRequests = 64
)

// Broker lends one privilege: it sets the initial sequence number of a TCP
// socket its caller sends it, for root and the members of one group.
type Broker struct {
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

func (b *Broker) defaults() {
	if b.ReadTimeout == 0 {
		b.ReadTimeout = 2 * time.Second
	}
	if b.MaxInFlight == 0 {
		b.MaxInFlight = 256
	}
	if b.MaxPerUID == 0 {
		b.MaxPerUID = 32
	}
	if b.Log == nil {
		b.Log = slog.New(slog.DiscardHandler)
	}
	if b.GroupName == "" {
		b.GroupName = "gid " + strconv.Itoa(b.GID)
	}
	if b.perUID == nil {
		b.perUID = map[uint32]int{}
	}
}

// Serve answers requests on ln until ln is closed, ctx ends, or (with
// IdleExit) the broker has been idle that long. It returns nil then.
func (b *Broker) Serve(ctx context.Context, ln *net.UnixListener) error {
	b.defaults()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	if b.IdleExit > 0 {
		b.mu.Lock()
		b.idle = time.AfterFunc(b.IdleExit, cancel)
		b.mu.Unlock()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				b.Log.Warn("broker accept", "err", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("broker: accept: %w", err)
		}
		cred, groups, err := peerCred(c)
		if err != nil {
			c.Close()
			b.refusedLog("peer credentials", "err", err)
			continue
		}
		if why := b.admit(cred.Uid); why != "" {
			// The write of one short message to a fresh socket does not
			// block; the deadline only guards against the unforeseen (a
			// short one let answers go unsent under the race detector).
			c.SetWriteDeadline(time.Now().Add(250 * time.Millisecond))
			c.Write([]byte(brokerRefused + why))
			c.Close()
			b.refusedLog(why, "uid", cred.Uid, "pid", cred.Pid)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer b.release(cred.Uid)
			b.serveConn(c, cred, groups)
		}()
	}
}

// admit takes a slot for a connection of uid, or says why not.
func (b *Broker) admit(uid uint32) string {
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

func (b *Broker) release(uid uint32) {
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
func (b *Broker) refusedLog(why string, args ...any) {
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

// allowed says whether a peer may use the broker: root, or a member of the
// group (its effective gid or one of its supplementary groups, as they
// were when it connected).
func (b *Broker) allowed(cred *unix.Ucred, groups []uint32) bool {
	if cred.Uid == 0 || cred.Gid == uint32(b.GID) {
		return true
	}
	for _, g := range groups {
		if g == uint32(b.GID) {
			return true
		}
	}
	return false
}

func (b *Broker) serveConn(c *net.UnixConn, cred *unix.Ucred, groups []uint32) {
	defer c.Close()
	if !b.allowed(cred, groups) {
		why := fmt.Sprintf("uid %d%s%s", cred.Uid, brokerNotMember, b.GroupName)
		b.reply(c, brokerRefused+why)
		b.refusedLog(why, "uid", cred.Uid, "pid", cred.Pid)
		return
	}
	// The greeting: a caller knows it will be served before it spends a
	// knock, without a round trip of its own.
	if !b.reply(c, brokerOK) {
		return
	}
	buf := make([]byte, brokerRequestLen)
	oob := make([]byte, unix.CmsgSpace(4*brokerMaxFDs))
	for i := 0; i < brokerMaxRequests; i++ {
		c.SetReadDeadline(time.Now().Add(b.ReadTimeout))
		n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
		// A failed read reports -1 (seen under the race detector, with a
		// peer that went away): never slice with it.
		n, oobn = max(n, 0), max(oobn, 0)
		fds, perr := rightsOf(oob[:oobn])
		if err != nil || n == 0 && oobn == 0 {
			closeAll(fds)
			// EOF, a deadline or a broken peer: nothing to answer.
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, syscall.ECONNRESET) {
				b.refusedLog("read", "uid", cred.Uid, "pid", cred.Pid, "err", err)
			}
			return
		}
		answer := b.handle(buf[:n], fds, flags, perr)
		closeAll(fds)
		if answer != brokerOK {
			b.refusedLog(answer, "uid", cred.Uid, "pid", cred.Pid)
		}
		if !b.reply(c, answer) {
			return
		}
	}
}

func (b *Broker) reply(c *net.UnixConn, s string) bool {
	c.SetWriteDeadline(time.Now().Add(b.ReadTimeout))
	_, err := c.Write([]byte(s))
	return err == nil
}

// handle answers one request: the message bytes and the descriptors it
// carried (all closed by the caller afterwards, whatever the answer).
func (b *Broker) handle(msg []byte, fds []int, flags int, rightsErr error) string {
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
	case len(msg) != brokerRequestLen:
		return brokerRefused + "malformed request"
	case len(fds) == 0:
		return brokerRefused + "no socket sent"
	}
	isn := binary.BigEndian.Uint32(msg[len(brokerMagic):])
	if err := checkUnconnectedTCP(fds[0]); err != nil {
		return brokerRefused + err.Error()
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

// peerCred returns the credentials of c's peer as they were when it
// connected: SO_PEERCRED and its supplementary groups (SO_PEERGROUPS).
func peerCred(c *net.UnixConn) (*unix.Ucred, []uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var cred *unix.Ucred
	var groups []uint32
	var oerr error
	err = rc.Control(func(fd uintptr) {
		cred, oerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if oerr != nil {
			return
		}
		groups, oerr = peerGroups(int(fd))
	})
	if err == nil {
		err = oerr
	}
	return cred, groups, err
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

var tcpStates = map[uint8]string{1: "connected", 2: "connecting", 3: "connecting", 4: "connected", 5: "connected",
	6: "connected", 8: "connected", 9: "connected", 10: "listening", 11: "connected", 12: "connecting"}

// checkUnconnectedTCP refuses anything but an IPv4 or IPv6 TCP socket that
// is neither connected, connecting nor listening.
func checkUnconnectedTCP(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fstat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return errors.New("not a socket")
	}
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
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

// applyISN is the broker's TCP_REPAIR sequence on a socket its caller
// still holds, and so may use at the same time. connect() on a socket in
// repair mode makes it established without a handshake, so: the state is
// checked again while repair mode is still on; a socket found connected
// then (or after repair mode is off) is disconnected without a packet and
// left in repair mode, in which it sends nothing, ever.
func applyISN(fd int, isn uint32) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return fmt.Errorf("set TCP_REPAIR: %w", err)
	}
	err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue)
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ, int(int32(isn)))
	}
	if err == nil {
		err = checkClosedState(fd)
	}
	if err != nil {
		return neutralize(fd, fmt.Errorf("set ISN: %w", err))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
		return neutralize(fd, fmt.Errorf("set TCP_REPAIR off: %w", err))
	}
	if err := checkClosedState(fd); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON)
		return neutralize(fd, fmt.Errorf("set ISN: %w", err))
	}
	return nil
}

// neutralize disconnects a socket in repair mode (no FIN, no RST) and
// leaves it in repair mode, where it can neither send nor be made to.
func neutralize(fd int, err error) error {
	sa := unix.RawSockaddr{Family: unix.AF_UNSPEC}
	unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	return fmt.Errorf("%w; the socket is left unusable", err)
}

// ListenBroker listens on path, a Unix SOCK_SEQPACKET socket of mode 0660
// and group gid, in a directory it makes (0755) if missing. An old socket
// at path is replaced; anything else there (a symbolic link, a file) is
// refused, as is a directory that others may write to.
func ListenBroker(path string, gid int) (*net.UnixListener, error) {
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
	ln.SetUnlinkOnClose(true)
	if err := os.Chown(path, -1, gid); err == nil {
		err = os.Chmod(path, 0o660)
	}
	if err != nil {
		ln.Close()
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
	unix.CloseOnExec(3)
	f := os.NewFile(3, "activated socket")
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("broker: activated socket: %w", err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok || ul.Addr().Network() != "unixpacket" {
		l.Close()
		return nil, errors.New("broker: activated socket: want a Unix SOCK_SEQPACKET socket (ListenSequentialPacket=)")
	}
	return ul, nil
}

// CheckBrokerCapability says whether this process may serve as the
// broker: CAP_NET_ADMIN in its effective set (CheckCapability, which opens
// no socket: the broker's unit allows only Unix sockets).
func CheckBrokerCapability() error {
	if err := CheckCapability(); err != nil {
		if errors.Is(err, ErrNoCapability) {
			return errors.New("broker: needs CAP_NET_ADMIN: run it as root, or start seqknock-broker.socket")
		}
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}
