//go:build linux

package broker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"

	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Timeout bounds one exchange with the broker.
const Timeout = 2 * time.Second

// Client asks a broker to set the ISN of this process's sockets.
// Each request has a connection of its own: connect, the request, the
// write side shut, then the greeting and the answer.
type Client struct {
	Path string
	// noPick leaves the source port to the broker (a client from before
	// pickPort): only a benchmark's baseline sets it.
	noPick bool
	// pick picks the source port of a request that names none; nil
	// means pickPort (a test's seam).
	pick func(fd int) (uint16, error)
}

// Error is the broker's refusal, or why it could not be asked.
type Error struct {
	Path   string
	Reason string
	// Missing says there is no broker at Path.
	Missing bool
	// Group is the broker's group when known: named in its refusal, or
	// the group of its socket when the socket's mode kept this user out.
	Group string
}

func (e *Error) Error() string {
	return "broker " + e.Path + ": " + e.Reason
}

// Busy says the broker had too many requests in flight (or a full
// backlog): the caller may try again.
func (e *Error) Busy() bool { return strings.HasPrefix(e.Reason, brokerRefused+"busy") }

// Refusal is Reason without the refusal's prefix.
func (e *Error) Refusal() string { return strings.TrimPrefix(e.Reason, brokerRefused) }

// Available says, without connecting, whether this process
// could connect to the broker: a socket at the path that it may write to.
// No broker, or a socket mode that keeps the user out, fails here, at
// once; the broker's own answer comes with the first request.
func (b *Client) Available() error {
	var st unix.Stat_t
	err := unix.Stat(b.Path, &st)
	if err == nil && st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		err = unix.ECONNREFUSED // what connect() says of a file
	}
	if err == nil {
		// The permission connect() needs, with this process's effective
		// ids and capabilities.
		err = unix.Faccessat(unix.AT_FDCWD, b.Path, unix.W_OK, unix.AT_EACCESS)
	}
	if err != nil {
		return b.connectError(err)
	}
	return nil
}

func (b *Client) connectError(err error) *Error {
	be := &Error{Path: b.Path, Reason: errReason(err)}
	be.Missing = errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED)
	if errors.Is(err, os.ErrPermission) {
		be.Group = socketGroup(b.Path)
	}
	return be
}

// Check connects to the broker and waits for its greeting, "ok" when it
// will serve this process. No socket is sent.
func (b *Client) Check() error {
	return b.retryBusy(func(c *net.UnixConn) error {
		if err := c.CloseWrite(); err != nil {
			return &Error{Path: b.Path, Reason: errReason(err)}
		}
		return b.answer(c, nil)
	})
}

// pickTries bounds the ports SetISNFrom picks for one request: each
// fails only when another socket took the port between the pick and
// the broker's bind.
const pickTries = 8

// SetISNFrom has the broker bind fd, an unbound, unconnected TCP socket,
// to source port sport and set its ISN. A port in use here fails with an
// error that wraps syscall.EADDRINUSE. With sport 0, this process picks
// the port in its own network namespace (pickPort) and names it; a port
// taken before the broker binds it is picked again, up to pickTries times.
func (b *Client) SetISNFrom(fd int, isn uint32, sport uint16) error {
	if sport != 0 || b.noPick {
		return b.setISNFrom(fd, isn, sport)
	}
	pick := b.pick
	if pick == nil {
		pick = pickPort
	}
	var err error
	for range pickTries {
		var p uint16
		if p, err = pick(fd); err != nil {
			return err
		}
		if err = b.setISNFrom(fd, isn, p); !errors.Is(err, syscall.EADDRINUSE) {
			return err
		}
	}
	return fmt.Errorf("pick a source port: %d picked ports were taken before the broker bound them: %w", pickTries, err)
}

// pickPort returns a free source port for fd (unbound, perhaps bound to
// an address alone) in this thread's network namespace: the one the
// kernel gives bind(port 0) on a throwaway socket of fd's family, address
// and IPV6_V6ONLY, closed at once. The package doc says why.
func pickPort(fd int) (uint16, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("pick a source port: getsockname: %w", err)
	}
	dom := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		dom = unix.AF_INET6
	} else if _, ok := sa.(*unix.SockaddrInet4); !ok {
		return 0, errors.New("pick a source port: not an IPv4 or IPv6 socket")
	}
	tmp, err := unix.Socket(dom, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("pick a source port: socket: %w", err)
	}
	defer unix.Close(tmp)
	if dom == unix.AF_INET6 {
		v6only, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err == nil {
			err = unix.SetsockoptInt(tmp, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only)
		}
		if err != nil {
			return 0, fmt.Errorf("pick a source port: IPV6_V6ONLY: %w", err)
		}
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		a.Port = 0
	case *unix.SockaddrInet6:
		a.Port = 0
	}
	if err := unix.Bind(tmp, sa); err != nil {
		return 0, fmt.Errorf("pick a source port: bind: %w", err)
	}
	got, err := unix.Getsockname(tmp)
	if err != nil {
		return 0, fmt.Errorf("pick a source port: getsockname: %w", err)
	}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		return uint16(a.Port), nil
	case *unix.SockaddrInet6:
		return uint16(a.Port), nil
	}
	return 0, errors.New("pick a source port: not an IPv4 or IPv6 socket")
}

// setISNFrom is one request: bind fd to sport (0: the broker's pick, as
// a client before pickPort asked) and set its ISN.
func (b *Client) setISNFrom(fd int, isn uint32, sport uint16) error {
	msg := encodeRequest(isn, sport)
	rights := unix.UnixRights(fd)
	return b.retryBusy(func(c *net.UnixConn) error {
		_, _, werr := c.WriteMsgUnix(msg[:], rights, nil)
		if werr == nil {
			// The last request: the broker sees the end right after it.
			werr = c.CloseWrite()
		}
		// The greeting, then the answer. A broker that refuses (not a
		// member, busy) answers and closes without reading what was sent:
		// its answer is still there to read after a failed write.
		if err := b.answer(c, werr); err != nil {
			return err
		}
		return b.answer(c, werr)
	})
}

// retryBusy connects and runs do on the connection; a broker that greets
// with "busy" (too many connections in flight), or whose backlog is full,
// is connected to again and do repeated, after 1 ms doubling, for up to
// Timeout.
func (b *Client) retryBusy(do func(c *net.UnixConn) error) error {
	deadline := time.Now().Add(Timeout)
	for wait := time.Millisecond; ; wait *= 2 {
		c, err := b.dial(deadline)
		if err == nil {
			err = do(c)
			c.Close()
		}
		var be *Error
		if err == nil || !errors.As(err, &be) || !be.Busy() || time.Now().Add(wait).After(deadline) {
			return err
		}
		time.Sleep(min(wait, 100*time.Millisecond))
	}
}

// dial connects to the broker, every later read and write bounded by
// deadline; a full backlog is a "busy" refusal.
func (b *Client) dial(deadline time.Time) (*net.UnixConn, error) {
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("unixpacket", b.Path)
	if errors.Is(err, unix.EAGAIN) {
		return nil, &Error{Path: b.Path, Reason: brokerRefused + "busy: the broker's backlog is full"}
	}
	if err != nil {
		return nil, b.connectError(err)
	}
	uc := c.(*net.UnixConn)
	uc.SetDeadline(deadline)
	return uc, nil
}

// answer reads one answer (the greeting, or that of a request). After a
// refusal the broker closes: its answer comes after the reset its close
// reports, and after a failed write (werr).
func (b *Client) answer(c *net.UnixConn, werr error) error {
	var buf [brokerMaxReply]byte
	n, _, _, err := readMsg(c, buf[:], nil)
	if errors.Is(err, syscall.ECONNRESET) {
		n, _, _, err = readMsg(c, buf[:], nil)
	}
	if err != nil || n == 0 {
		if werr != nil {
			err = werr
		} else if err == nil || err == io.EOF {
			err = errors.New("closed without an answer")
		}
		return &Error{Path: b.Path, Reason: errReason(err)}
	}
	ans := string(buf[:n])
	switch {
	case ans == brokerOK:
		return nil
	case strings.HasPrefix(ans, brokerPortInUse):
		return fmt.Errorf("%w: %w", syscall.EADDRINUSE, &Error{Path: b.Path, Reason: ans})
	case strings.HasPrefix(ans, brokerRefused):
		return &Error{Path: b.Path, Reason: ans, Group: refusedGroup(ans)}
	}
	return &Error{Path: b.Path, Reason: fmt.Sprintf("unexpected answer %q", ans)}
}

// refusedGroup is the group a broker's refusal of a non-member names
// (Broker.notMember), or "".
func refusedGroup(ans string) string {
	i := strings.LastIndex(ans, brokerNotMember)
	if i < 0 {
		return ""
	}
	return ans[i+len(brokerNotMember):]
}

// socketGroup names the group of the socket at path (the broker's: it
// and seqknock-broker.socket give its socket that group), or "".
func socketGroup(path string) string {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return ""
	}
	if g, err := user.LookupGroupId(strconv.Itoa(int(st.Gid))); err == nil {
		return g.Name
	}
	return "gid " + strconv.Itoa(int(st.Gid))
}

// errReason is err without the operation prefixes net adds.
func errReason(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || err == unix.EAGAIN {
		return "no answer within " + Timeout.String()
	}
	return err.Error()
}
