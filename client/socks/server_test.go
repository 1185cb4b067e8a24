package socks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
)

// rig is a Server on loopback whose Dial connects to an echo server and
// whose owner check answers owner.
type rig struct {
	addr   string
	dials  atomic.Int32
	mu     sync.Mutex
	log    []string
	srv    *Server
	target string
}

func newRig(t *testing.T, owner bool, user, password string) *rig {
	t.Helper()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	r := &rig{target: echo.Addr().String()}
	r.srv = &Server{
		Cover: func(d Dest) bool { return d.Host == "srv.test" || d.Host == "2001:db8::1" },
		Dial: func(ctx context.Context, d Dest) (*net.TCPConn, error) {
			r.dials.Add(1)
			c, err := net.Dial("tcp", r.target)
			if err != nil {
				return nil, err
			}
			return c.(*net.TCPConn), nil
		},
		Owner:            func(net.Conn) (bool, string, error) { return owner, "uid 1", nil },
		User:             user,
		Password:         password,
		HandshakeTimeout: 500 * time.Millisecond,
		Logf: func(format string, a ...any) {
			r.mu.Lock()
			r.log = append(r.log, fmt.Sprintf(format, a...))
			r.mu.Unlock()
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served sync.WaitGroup
	t.Cleanup(func() { l.Close(); served.Wait() })
	go r.srv.Serve(context.Background(), countingListener{l, &served})
	r.addr = l.Addr().String()
	return r
}

// countingListener counts each connection it accepts in wg until the
// server closes it.
type countingListener struct {
	net.Listener
	wg *sync.WaitGroup
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.wg.Add(1)
	return &countedConn{TCPConn: c.(*net.TCPConn), done: sync.OnceFunc(l.wg.Done)}, nil
}

type countedConn struct {
	*net.TCPConn
	done func()
}

func (c *countedConn) Close() error {
	defer c.done()
	return c.TCPConn.Close()
}

// exchange connects, sends in, and returns everything the server sends
// until it closes (or 2 s pass).
func (r *rig) exchange(t *testing.T, in []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	c.Write(in)
	out, _ := io.ReadAll(c)
	return out
}

// logged waits a moment for the server's log and returns it.
func (r *rig) logged() string {
	for i := 0; i < 100; i++ {
		r.mu.Lock()
		n := len(r.log)
		r.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.log, "\n")
}

func socksConnect(host string, port uint16) []byte {
	return append(append([]byte{5, 1, 0, 3, byte(len(host))}, host...), byte(port>>8), byte(port))
}

// TestServeSOCKS5Owner: the owner gets in without a password, the
// relay carries bytes both ways, and the connection is logged.
func TestServeSOCKS5Owner(t *testing.T) {
	r := newRig(t, true, "", "")
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(append([]byte{5, 1, 0}, socksConnect("srv.test", 22)...))
	br := bufio.NewReader(c)
	hdr := make([]byte, 2+10)
	if _, err := io.ReadFull(br, hdr); err != nil || !bytes.Equal(hdr[:4], []byte{5, 0, 5, 0}) {
		t.Fatalf("handshake: % x %v", hdr, err)
	}
	fmt.Fprintf(c, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("relay: %q %v", line, err)
	}
	c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after half-close: %q %v", rest, err)
	}
	if l := r.logged(); !strings.Contains(l, `connected`) || !strings.Contains(l, `"srv.test" port 22`) {
		t.Errorf("log: %s", l)
	}
}

// TestServeDialFails: a dial that fails gets SOCKS5 the reply code of its
// error (connection refused: 5) and HTTP 502, after the handshake's
// answers, and one log line.
func TestServeDialFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want []byte
	}{
		{"socks5", append([]byte{5, 1, 0}, socksConnect("srv.test", 22)...), []byte{5, 0, 5, ReplyConnectionRefused, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"http", []byte("CONNECT srv.test:22 HTTP/1.1\r\n\r\n"), HTTPStatusLine(502)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, true, "", "")
			closed, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			r.target = closed.Addr().String()
			closed.Close()
			if out := r.exchange(t, tc.in); !bytes.Equal(out, tc.want) {
				t.Errorf("answer % x (%q), want % x", out, out, tc.want)
			}
			if l := r.logged(); !strings.HasPrefix(l, "failed ") || !strings.Contains(l, "connection refused") || strings.Contains(l, "\n") {
				t.Errorf("log %q: want one line saying failed ... connection refused", l)
			}
			if n := r.dials.Load(); n != 1 {
				t.Errorf("%d dials, want 1", n)
			}
		})
	}
}

// TestServeRefusals: each refusal gets the protocol's own answer, one log
// line, and no dial.
func TestServeRefusals(t *testing.T) {
	basic := func(u, p string) string {
		return "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) + "\r\n"
	}
	for _, tc := range []struct {
		name           string
		owner          bool
		user, password string
		in             []byte
		want           []byte // the answer's start
		log            string
	}{
		{"socks5 not covered", true, "", "", append([]byte{5, 1, 0}, socksConnect("other.test", 22)...), []byte{5, 0, 5, 2}, "no [[host]] covers it"},
		{"socks5 address not covered", true, "", "", []byte{5, 1, 0, 5, 1, 0, 1, 198, 18, 0, 1, 0, 22}, []byte{5, 0, 5, 2}, "no [[host]] covers it"},
		{"socks5 other user", false, "", "", append([]byte{5, 1, 0}, socksConnect("srv.test", 22)...), []byte{5, 0xff}, "not the proxy's user, and no socks_user"},
		{"socks5 other user, no password offered", false, "bob", "pw", append([]byte{5, 1, 0}, socksConnect("srv.test", 22)...), []byte{5, 0xff}, "no username/password offered"},
		{"socks5 wrong password", false, "bob", "pw", []byte("\x05\x01\x02\x01\x03bob\x02px"), []byte{5, 2, 1, 1}, "wrong socks5 username or password"},
		{"socks5 wrong user", false, "bob", "pw", []byte("\x05\x01\x02\x01\x03eve\x02pw"), []byte{5, 2, 1, 1}, "wrong socks5 username or password"},
		{"socks5 bind", true, "", "", []byte{5, 1, 0, 5, 2, 0, 3, 8, 's', 'r', 'v', '.', 't', 'e', 's', 't', 0, 22}, []byte{5, 0, 5, 7}, "only CONNECT"},
		{"socks5 garbage greeting", true, "", "", []byte{5, 0}, []byte{5, 0xff}, "no method offered"},
		{"socks5 cut short", true, "", "", []byte{5, 1, 0, 5, 1}, []byte{5, 0, 5, 1}, "socks5 request"},
		{"http not covered", true, "", "", []byte("CONNECT other.test:22 HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 403 "), "no [[host]] covers it"},
		{"http other user", false, "", "", []byte("CONNECT srv.test:22 HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 403 "), "not the proxy's user"},
		{"http other user, no auth", false, "bob", "pw", []byte("CONNECT srv.test:22 HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 407 "), "no Proxy-Authorization"},
		{"http wrong password", false, "bob", "pw", []byte("CONNECT srv.test:22 HTTP/1.1\r\n" + basic("bob", "px") + "\r\n"), []byte("HTTP/1.1 407 "), "wrong Proxy-Authorization"},
		{"http GET", true, "", "", []byte("GET http://srv.test/ HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 405 "), "only CONNECT"},
		{"garbage", true, "", "", []byte("\x16\x03\x01\x00\x05hello\n"), []byte("HTTP/1.1 400 "), "neither SOCKS5 nor HTTP: first byte 0x16"},
		{"oversized", true, "", "", []byte("CONNECT srv.test:22 HTTP/1.1\r\nX: " + strings.Repeat("a", 10000) + "\r\n\r\n"), []byte("HTTP/1.1 431 "), "header over"},
		{"silent", true, "", "", nil, nil, "no request"},
		{"http half a request", true, "", "", []byte("CONNECT srv.test:22 HTTP/1.1\r\n"), []byte("HTTP/1.1 408 "), "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.owner, tc.user, tc.password)
			out := r.exchange(t, tc.in)
			if !bytes.HasPrefix(out, tc.want) || (tc.want == nil && len(out) != 0) {
				t.Errorf("answer % x (%q), want it to start % x", out, out, tc.want)
			}
			l := r.logged()
			if !strings.Contains(l, "refused") || !strings.Contains(l, tc.log) || strings.Count(l, "\n") != 0 {
				t.Errorf("log %q: want one line saying refused ... %s", l, tc.log)
			}
			if n := r.dials.Load(); n != 0 {
				t.Errorf("%d dials", n)
			}
		})
	}
}

// TestServePasswordAndHTTP: the right password lets another user in, over
// SOCKS5 and HTTP; the owner uses HTTP CONNECT without one.
func TestServePasswordAndHTTP(t *testing.T) {
	for _, tc := range []struct {
		name  string
		owner bool
		in    string
		want  string
	}{
		{"socks5 password", false, "\x05\x01\x02\x01\x03bob\x02pw" + string(socksConnect("srv.test", 22)), "\x05\x02\x01\x00\x05\x00"},
		{"http owner", true, "CONNECT [2001:db8::1]:22 HTTP/1.1\r\n\r\n", "HTTP/1.1 200 "},
		{"http basic", false, "CONNECT srv.test:22 HTTP/1.1\r\nProxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("bob:pw")) + "\r\n\r\n", "HTTP/1.1 200 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.owner, "bob", "pw")
			c, err := net.Dial("tcp", r.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			// The bytes after the request, sent with it, are relayed too.
			io.WriteString(c, tc.in+"early\n")
			c.(*net.TCPConn).CloseWrite()
			out, err := io.ReadAll(c)
			if err != nil || !strings.HasPrefix(string(out), tc.want) || !strings.HasSuffix(string(out), "early\n") {
				t.Fatalf("got %q %v, want %q ... early", out, err, tc.want)
			}
			if r.dials.Load() != 1 {
				t.Errorf("%d dials, want 1", r.dials.Load())
			}
		})
	}
}

// TestServeOwnerWithPasswordAlone: with no credentials configured, the
// owner's client that offers only username/password is let in whatever
// it sends; another user's is not.
func TestServeOwnerWithPasswordAlone(t *testing.T) {
	in := append([]byte("\x05\x01\x02\x01\x03bob\x02px"), socksConnect("srv.test", 22)...)
	if out := newRig(t, true, "", "").exchange(t, in); !bytes.HasPrefix(out, []byte("\x05\x02\x01\x00\x05\x00")) {
		t.Errorf("owner: % x", out)
	}
	r := newRig(t, false, "", "")
	if out := r.exchange(t, in); !bytes.Equal(out, []byte{5, 0xff}) {
		t.Errorf("other user: % x", out)
	}
}

// TestReplyFor: failed dials map to SOCKS5 reply codes.
func TestReplyFor(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want byte
	}{
		{fmt.Errorf("no SYN-ACK from x: %w", client.ErrNoAnswer), ReplyHostUnreachable},
		{fmt.Errorf("connect: %w", syscall.ECONNREFUSED), ReplyConnectionRefused},
		{fmt.Errorf("connect: %w", syscall.ENETUNREACH), ReplyNetworkUnreachable},
		{&net.DNSError{Err: "no such host", Name: "x"}, ReplyHostUnreachable},
		{errors.New("other"), ReplyGeneralFailure},
	} {
		if got := replyFor(tc.err); got != tc.want {
			t.Errorf("%v: reply %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestCover: names match [[host]] as proxy matches them; addresses only a
// [[host]] that names the address (or a pattern over its text), never by
// resolving [[host]] names.
func TestCover(t *testing.T) {
	cfg, err := client.ParseConfig("c.toml", []byte(`
[[host]]
match = "srv.test"
key_file = "k"
[[host]]
match = "*.lab.test"
port = 22
key_file = "k"
[[host]]
match = "2001:DB8::1"
key_file = "k"
[[host]]
match = "198.18.7.*"
key_file = "k"
[[host]]
match = "localhost"
key_file = "k"
`), "/h")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host  string
		port  uint16
		match string // "" refused
		name  string
	}{
		{"srv.test", 22, "srv.test", "srv.test"},
		{"srv.test", 443, "srv.test", "srv.test"},
		{"a.lab.test", 22, "*.lab.test", "a.lab.test"},
		{"a.lab.test", 23, "", ""},
		{"other.test", 22, "", ""},
		{"2001:db8::1", 22, "2001:DB8::1", "2001:DB8::1"},
		{"2001:db8::2", 22, "", ""},
		{"198.18.7.9", 22, "198.18.7.*", "198.18.7.9"},
		// localhost's address is not localhost: no resolving.
		{"127.0.0.1", 22, "", ""},
		{"198.18.0.1", 22, "", ""},
	} {
		d := Dest{Host: tc.host, Port: tc.port}
		if err := d.finish(); err != nil {
			t.Fatal(err)
		}
		e, name := Cover(cfg, d)
		got := ""
		if e != nil {
			got = e.Match
		}
		if got != tc.match || name != tc.name {
			t.Errorf("%s port %d: %q %q, want %q %q", tc.host, tc.port, got, name, tc.match, tc.name)
		}
	}
}

// TestServeBoundsOtherUsers: peers that are not the owner hold at most
// MaxOtherHandshakes handshakes at once; the next is closed at once.
func TestServeBoundsOtherUsers(t *testing.T) {
	r := newRig(t, false, "bob", "pw")
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < MaxOtherHandshakes; i++ {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// Let the server count them before the next arrives.
	deadline := time.Now().Add(2 * time.Second)
	for r.srv.others.Load() < MaxOtherHandshakes && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// Served, it would get the method it offers (password) first.
	out := r.exchange(t, []byte{5, 1, 2})
	if len(out) != 0 {
		t.Errorf("connection %d: got %q, want a close without an answer", MaxOtherHandshakes+1, out)
	}
	if l := r.logged(); !strings.Contains(l, "more than 16 handshakes") {
		t.Errorf("log: %s", l)
	}
}
