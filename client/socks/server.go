package socks

import (
	"bufio"
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/seqknock/seqknock/client"
)

// DefaultHandshakeTimeout bounds the time from accept to a complete
// request (greeting, password and request, or the CONNECT headers).
const DefaultHandshakeTimeout = 10 * time.Second

// Server answers SOCKS5 and HTTP CONNECT requests on the same listeners:
// a first byte of 0x05 is SOCKS5, anything else HTTP.
type Server struct {
	// Cover tells whether a destination may be dialed; false refuses it
	// (SOCKS5 reply 2, HTTP 403) and nothing is dialed.
	Cover func(d Dest) bool
	// Dial connects to a destination Cover allowed, with a knock.
	Dial func(ctx context.Context, d Dest) (*net.TCPConn, error)
	// Owner tells whether the peer of c is the proxy's own user (for a
	// Unix socket, its SO_PEERCRED uid; on loopback TCP, the uid that owns
	// the other end), and who it is, for the log.
	Owner func(c net.Conn) (ok bool, who string, err error)
	// User and Password, when User is not empty, let a peer that is not
	// the owner in with SOCKS5 username/password (RFC 1929) or HTTP
	// Proxy-Authorization Basic.
	User, Password string
	// Logf writes one log line.
	Logf func(format string, a ...any)
	// HandshakeTimeout: DefaultHandshakeTimeout when 0.
	HandshakeTimeout time.Duration

	// others counts the handshakes of peers that are not the owner.
	others atomic.Int32
}

// MaxOtherHandshakes bounds the handshakes of peers that are not the
// proxy's user in progress at once: another local user cannot tie up the
// proxy's descriptors, and the owner is never turned away.
const MaxOtherHandshakes = 16

// Serve accepts connections on l until it fails (or is closed), each
// served in a goroutine of its own.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				s.logf("accept: %v", err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		go s.ServeConn(ctx, c)
	}
}

func (s *Server) logf(format string, a ...any) {
	if s.Logf != nil {
		s.Logf(format, a...)
	}
}

// session is one client connection being served.
type session struct {
	s     *Server
	c     net.Conn
	r     *bufio.Reader
	from  string // the peer, for the log
	owner bool
	// handshakeDone, when set, is called once the handshake ends.
	handshakeDone func()
}

// refuse answers a refused request with answer, logs why in one line,
// and leaves the connection to be closed. The handshake's deadline may
// have passed: the answer gets a moment of its own.
func (ss *session) refuse(answer []byte, format string, a ...any) {
	ss.c.SetWriteDeadline(time.Now().Add(time.Second))
	ss.c.Write(answer)
	ss.s.logf("refused %s: "+format, append([]any{ss.from}, a...)...)
	// Closing with unread bytes would reset the connection, and the
	// client could lose the answer: shut the write side, then read and
	// drop what is left, up to a bound.
	if hc, ok := ss.c.(halfConn); ok {
		hc.CloseWrite()
		ss.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.Copy(io.Discard, io.LimitReader(ss.c, 1<<20))
	}
}

// ServeConn serves one client connection and closes it.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(cmp.Or(s.HandshakeTimeout, DefaultHandshakeTimeout)))
	ss := &session{s: s, c: c, r: bufio.NewReaderSize(c, 4096), from: c.RemoteAddr().String()}
	if ss.from == "" || ss.from == "@" {
		ss.from = "unix socket"
	}
	ok, who, err := s.Owner(c)
	if err != nil {
		// Not known to be the owner: the password alone may let it in.
		who = "unknown user (" + err.Error() + ")"
	}
	ss.owner = ok && err == nil
	ss.from += " " + who
	if !ss.owner {
		n := s.others.Add(1)
		ss.handshakeDone = sync.OnceFunc(func() { s.others.Add(-1) })
		defer ss.handshakeDone()
		if n > MaxOtherHandshakes {
			s.logf("refused %s: more than %d handshakes of other users at once", ss.from, MaxOtherHandshakes)
			return
		}
	}
	first, err := ss.r.Peek(1)
	if err != nil {
		s.logf("refused %s: no request: %v", ss.from, err)
		return
	}
	switch c := first[0]; {
	case c == socksVersion:
		ss.socks5(ctx)
	case c == 0x04:
		// SOCKS4's "request rejected or failed".
		ss.refuse([]byte{0, 91, 0, 0, 0, 0, 0, 0}, "socks4 is not served (use SOCKS5)")
	case c >= 'A' && c <= 'Z':
		ss.http(ctx)
	default:
		ss.refuse(HTTPStatusLine(400), "neither SOCKS5 nor HTTP: first byte %#02x", c)
	}
}

func (ss *session) socks5(ctx context.Context) {
	s := ss.s
	methods, err := ReadGreeting(ss.r)
	if err != nil {
		ss.refuse([]byte{socksVersion, MethodNoneOK}, "%v", err)
		return
	}
	offers := func(m byte) bool { return slices.Contains(methods, m) }
	switch {
	case ss.owner && offers(MethodNone):
		ss.c.Write([]byte{socksVersion, MethodNone})
	case s.User != "" && offers(MethodPassword):
		ss.c.Write([]byte{socksVersion, MethodPassword})
		user, password, err := ReadPassword(ss.r)
		if err != nil {
			ss.refuse(PasswordReply(false), "%v", err)
			return
		}
		if !s.credentialsOK(user, password) {
			ss.refuse(PasswordReply(false), "wrong socks5 username or password (user %q)", clip(user))
			return
		}
		ss.c.Write(PasswordReply(true))
	case ss.owner && offers(MethodPassword):
		// No credentials are configured, and the kernel vouches for
		// the owner: whatever a client set up to send is accepted.
		ss.c.Write([]byte{socksVersion, MethodPassword})
		if _, _, err := ReadPassword(ss.r); err != nil {
			ss.refuse(PasswordReply(false), "%v", err)
			return
		}
		ss.c.Write(PasswordReply(true))
	case ss.owner:
		ss.refuse([]byte{socksVersion, MethodNoneOK}, "socks5 client offers no method served (none or username/password)")
		return
	default:
		ss.c.Write([]byte{socksVersion, MethodNoneOK})
		if s.User == "" {
			s.logf("refused %s: not the proxy's user, and no socks_user is configured", ss.from)
		} else {
			s.logf("refused %s: not the proxy's user, and no username/password offered", ss.from)
		}
		return
	}
	d, err := ReadRequest(ss.r)
	if err != nil {
		code := ReplyGeneralFailure
		var pe *ProtoError
		if errors.As(err, &pe) {
			code = pe.Reply
		}
		ss.refuse(Reply(byte(code), netip.AddrPort{}), "%v", err)
		return
	}
	if !s.Cover(d) {
		ss.refuse(Reply(ReplyNotAllowed, netip.AddrPort{}), "%s: no [[host]] covers it", d)
		return
	}
	ss.connect(ctx, d, func(err error) []byte { return Reply(replyFor(err), netip.AddrPort{}) },
		func(up *net.TCPConn) []byte { return Reply(ReplySucceeded, up.LocalAddr().(*net.TCPAddr).AddrPort()) })
}

func (ss *session) http(ctx context.Context) {
	s := ss.s
	req, err := ReadHTTPConnect(ss.r)
	if err != nil {
		status := 400
		var pe *ProtoError
		var ne net.Error
		switch {
		case errors.As(err, &pe):
			status = pe.Reply
		case errors.As(err, &ne) && ne.Timeout():
			status = 408
		}
		ss.refuse(HTTPStatusLine(status), "%v", err)
		return
	}
	switch {
	case ss.owner:
	case s.User != "" && req.HasAuth && s.credentialsOK(req.User, req.Password):
	case s.User != "" && req.HasAuth:
		ss.refuse(HTTPStatusLine(407), "wrong Proxy-Authorization username or password (user %q)", clip(req.User))
		return
	case s.User != "":
		ss.refuse(HTTPStatusLine(407), "not the proxy's user, and no Proxy-Authorization given")
		return
	default:
		ss.refuse(HTTPStatusLine(403), "not the proxy's user, and no socks_user is configured")
		return
	}
	if !s.Cover(req.Dest) {
		ss.refuse(HTTPStatusLine(403), "%s: no [[host]] covers it", req.Dest)
		return
	}
	ss.connect(ctx, req.Dest, func(error) []byte { return HTTPStatusLine(502) },
		func(*net.TCPConn) []byte { return HTTPStatusLine(200) })
}

func (s *Server) credentialsOK(user, password string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(s.User))
	p := subtle.ConstantTimeCompare([]byte(password), []byte(s.Password))
	return s.User != "" && u&p == 1
}

// connect dials d, answers with the reply that failed or ok makes, and
// relays. The handshake's deadline does not bound the dial (the dialer has
// its own: --syn-timeout per knock, --timeout overall).
func (ss *session) connect(ctx context.Context, d Dest, failed func(error) []byte, ok func(up *net.TCPConn) []byte) {
	ss.c.SetDeadline(time.Time{})
	up, err := ss.s.Dial(ctx, d)
	if err != nil {
		ss.s.logf("failed %s: %s: %v", ss.from, d, err)
		ss.c.Write(failed(err))
		return
	}
	if _, err := ss.c.Write(ok(up)); err != nil {
		up.Close()
		return
	}
	ss.relay(up, d)
}

// replyFor is the SOCKS5 reply code for a failed dial.
func replyFor(err error) byte {
	switch {
	case errors.Is(err, client.ErrNoAnswer):
		// Every knock went unanswered: as a host that does not answer.
		return ReplyHostUnreachable
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReplyConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return ReplyNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH):
		return ReplyHostUnreachable
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReplyTTLExpired
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return ReplyHostUnreachable
	}
	return ReplyGeneralFailure
}

// relay copies (splices) between the client and up until both directions
// end, each end shutting the other side's write half.
func (ss *session) relay(up *net.TCPConn, d Dest) {
	defer up.Close()
	if ss.handshakeDone != nil {
		ss.handshakeDone()
	}
	ss.c.SetDeadline(time.Time{})
	ss.s.logf("connected %s: %s via %s", ss.from, d, up.RemoteAddr())
	down, ok := ss.c.(halfConn)
	if !ok {
		return
	}
	// Bytes the client sent after its request, already read.
	if n := ss.r.Buffered(); n > 0 {
		b, _ := ss.r.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	done := make(chan struct{})
	go func() {
		io.Copy(up, down)
		up.CloseWrite()
		close(done)
	}()
	io.Copy(down, up)
	down.CloseWrite()
	<-done
}

// halfConn is a connection whose write side closes alone: *net.TCPConn
// and *net.UnixConn.
type halfConn interface {
	net.Conn
	CloseWrite() error
}
