package socks

import (
	"bufio"
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// SOCKS5 (RFC 1928) and its username/password method (RFC 1929).
const (
	socksVersion = 0x05
	authVersion  = 0x01

	MethodNone     = 0x00
	MethodPassword = 0x02
	MethodNoneOK   = 0xff // no acceptable method

	cmdConnect = 0x01

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// SOCKS5 reply codes (RFC 1928 section 6).
const (
	ReplySucceeded          = 0x00
	ReplyGeneralFailure     = 0x01
	ReplyNotAllowed         = 0x02 // connection not allowed by ruleset
	ReplyNetworkUnreachable = 0x03
	ReplyHostUnreachable    = 0x04
	ReplyConnectionRefused  = 0x05
	ReplyTTLExpired         = 0x06
	ReplyCommandUnsupported = 0x07
	ReplyAddressUnsupported = 0x08
)

// MaxHTTPHeader bounds an HTTP CONNECT request: its request line and
// headers together, in bytes.
const MaxHTTPHeader = 8192

// maxHTTPHeaders bounds the number of header lines of a CONNECT request.
const maxHTTPHeaders = 64

// Dest is the destination a client asks for.
type Dest struct {
	// Host is a domain name as given, or an IP address in its canonical
	// text form (RFC 5952 for IPv6).
	Host string
	Port uint16
	// IP is set when the client gave an address, not a name.
	IP netip.Addr
}

func (d Dest) String() string {
	return strconv.Quote(d.Host) + " port " + strconv.Itoa(int(d.Port))
}

// ProtoError is a request the proxy cannot serve: Reply is the SOCKS5
// reply code or the HTTP status to answer it with.
type ProtoError struct {
	Reply int
	Err   error
}

func (e *ProtoError) Error() string { return e.Err.Error() }

func protoErr(reply int, format string, a ...any) error {
	return &ProtoError{Reply: reply, Err: fmt.Errorf(format, a...)}
}

// ReadGreeting reads a SOCKS5 client's greeting, version byte included:
// the methods it offers.
func ReadGreeting(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("socks5 greeting: %w", err)
	}
	if hdr[0] != socksVersion {
		return nil, fmt.Errorf("socks5 greeting: version %d, want 5", hdr[0])
	}
	if hdr[1] == 0 {
		return nil, errors.New("socks5 greeting: no method offered")
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return nil, fmt.Errorf("socks5 greeting: %w", err)
	}
	return methods, nil
}

// ReadPassword reads an RFC 1929 username/password request.
func ReadPassword(r io.Reader) (user, password string, err error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", "", fmt.Errorf("socks5 password: %w", err)
	}
	if b[0] != authVersion {
		return "", "", fmt.Errorf("socks5 password: version %d, want 1", b[0])
	}
	var fields [2][]byte
	for i := range fields {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", "", fmt.Errorf("socks5 password: %w", err)
		}
		fields[i] = make([]byte, b[0])
		if _, err := io.ReadFull(r, fields[i]); err != nil {
			return "", "", fmt.Errorf("socks5 password: %w", err)
		}
	}
	return string(fields[0]), string(fields[1]), nil
}

// PasswordReply is the answer to an RFC 1929 request.
func PasswordReply(ok bool) []byte {
	if ok {
		return []byte{authVersion, 0x00}
	}
	return []byte{authVersion, 0x01}
}

// ReadRequest reads a SOCKS5 request. A request the proxy does not serve
// (not CONNECT, an unknown address type, a bad name, port 0) is a
// *ProtoError carrying the reply code.
func ReadRequest(r io.Reader) (Dest, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Dest{}, fmt.Errorf("socks5 request: %w", err)
	}
	if hdr[0] != socksVersion {
		return Dest{}, protoErr(ReplyGeneralFailure, "socks5 request: version %d, want 5", hdr[0])
	}
	var n int // the address's length
	switch hdr[3] {
	case atypIPv4:
		n = 4
	case atypIPv6:
		n = 16
	case atypDomain:
		var b [1]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Dest{}, fmt.Errorf("socks5 request: %w", err)
		}
		n = int(b[0])
	default:
		return Dest{}, protoErr(ReplyAddressUnsupported, "socks5 request: address type %d", hdr[3])
	}
	b := make([]byte, n+2) // the address, then the port
	if _, err := io.ReadFull(r, b); err != nil {
		return Dest{}, fmt.Errorf("socks5 request: %w", err)
	}
	d := Dest{Port: binary.BigEndian.Uint16(b[n:])}
	if hdr[3] == atypDomain {
		d.Host = string(b[:n])
	} else {
		// An IPv4-mapped address is the IPv4 address it maps.
		ip, _ := netip.AddrFromSlice(b[:n])
		d.IP = ip.Unmap()
	}
	if hdr[1] != cmdConnect {
		return Dest{}, protoErr(ReplyCommandUnsupported, "socks5 request: command %d, only CONNECT (1) is served", hdr[1])
	}
	if err := d.finish(); err != nil {
		return Dest{}, protoErr(ReplyGeneralFailure, "socks5 request: %v", err)
	}
	return d, nil
}

// finish checks d and puts an address given as a name into IP.
func (d *Dest) finish() error {
	if d.Port == 0 {
		return errors.New("port 0")
	}
	if a, err := netip.ParseAddr(d.Host); !d.IP.IsValid() && err == nil && a.Zone() == "" {
		d.IP = a.Unmap() // a name that is an address is matched as an address
	}
	if d.IP.IsValid() {
		d.Host = d.IP.String()
		return nil
	}
	return checkName(d.Host)
}

// checkName accepts a host name: 1 to 253 bytes of letters, digits, '-',
// '_' and '.', so nothing else reaches a log line, a pattern match or the
// resolver.
func checkName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("host name of %d bytes", len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("host name %q: byte %#02x not allowed", name, c)
		}
	}
	return nil
}

// Reply is a SOCKS5 reply with code and the bound address (the zero
// address for a refusal).
func Reply(code byte, bound netip.AddrPort) []byte {
	a := bound.Addr().Unmap()
	out := []byte{socksVersion, code, 0, atypIPv4}
	switch {
	case a.Is6():
		out[3] = atypIPv6
	case !a.IsValid():
		a = netip.IPv4Unspecified()
	}
	out = append(out, a.AsSlice()...)
	return binary.BigEndian.AppendUint16(out, bound.Port())
}

// HTTPRequest is an HTTP CONNECT request.
type HTTPRequest struct {
	Dest Dest
	// Auth is the Proxy-Authorization header's Basic credentials, when
	// given.
	User, Password string
	HasAuth        bool
}

// ReadHTTPConnect reads an HTTP/1.x CONNECT request, its request line and
// headers, at most MaxHTTPHeader bytes and maxHTTPHeaders header lines.
// A request it refuses is a *ProtoError carrying the HTTP status.
func ReadHTTPConnect(r *bufio.Reader) (HTTPRequest, error) {
	budget := MaxHTTPHeader
	line, err := readLine(r, &budget)
	if err != nil {
		return HTTPRequest{}, err
	}
	parts := strings.Split(line, " ")
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "HTTP/1.") || len(parts[2]) != 8 {
		return HTTPRequest{}, protoErr(400, "http request line %q: want CONNECT HOST:PORT HTTP/1.x", clip(line))
	}
	if parts[0] != "CONNECT" {
		return HTTPRequest{}, protoErr(405, "http method %q: only CONNECT is served", clip(parts[0]))
	}
	var req HTTPRequest
	host, port, err := net.SplitHostPort(parts[1])
	if err != nil {
		return HTTPRequest{}, protoErr(400, "http CONNECT target %q: want HOST:PORT", clip(parts[1]))
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return HTTPRequest{}, protoErr(400, "http CONNECT target %q: bad port", clip(parts[1]))
	}
	req.Dest = Dest{Host: host, Port: uint16(p)}
	if err := req.Dest.finish(); err != nil {
		return HTTPRequest{}, protoErr(400, "http CONNECT target: %v", err)
	}
	for n := 0; ; n++ {
		line, err := readLine(r, &budget)
		if err != nil {
			return HTTPRequest{}, err
		}
		if line == "" {
			return req, nil
		}
		if n >= maxHTTPHeaders {
			return HTTPRequest{}, protoErr(431, "http request: more than %d header lines", maxHTTPHeaders)
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return HTTPRequest{}, protoErr(400, "http header %q: no colon", clip(line))
		}
		if strings.EqualFold(strings.TrimSpace(name), "Proxy-Authorization") {
			scheme, cred, _ := strings.Cut(strings.TrimSpace(value), " ")
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
			if !strings.EqualFold(scheme, "Basic") || err != nil {
				return HTTPRequest{}, protoErr(400, "http Proxy-Authorization: want Basic credentials")
			}
			req.User, req.Password, _ = strings.Cut(string(raw), ":")
			req.HasAuth = true
		}
	}
}

// errTooLong is a request over its size bound.
var errTooLong = &ProtoError{Reply: 431, Err: fmt.Errorf("http request: header over %d bytes", MaxHTTPHeader)}

// readLine reads one line ending in LF (CR LF or LF alone), taking its
// length from budget; a line that would overrun budget is errTooLong.
func readLine(r *bufio.Reader, budget *int) (string, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > *budget {
			return "", errTooLong
		}
		line = append(line, frag...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", fmt.Errorf("http request: %w", err)
		}
	}
	*budget -= len(line)
	s := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", protoErr(400, "http request: control byte %#02x", c)
		}
	}
	return s, nil
}

// clip shortens s for a log line.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// HTTPStatusLine is the status line and headers of a reply with status.
func HTTPStatusLine(status int) []byte {
	text := cmp.Or(map[int]string{
		200: "Connection established",
		400: "Bad Request",
		403: "Forbidden",
		405: "Method Not Allowed",
		407: "Proxy Authentication Required",
		408: "Request Timeout",
		431: "Request Header Fields Too Large",
		502: "Bad Gateway",
		504: "Gateway Timeout",
	}[status], "Error")
	s := fmt.Sprintf("HTTP/1.1 %d %s\r\n", status, text)
	switch {
	case status == 407:
		s += "Proxy-Authenticate: Basic realm=\"seqknock\"\r\nContent-Length: 0\r\nConnection: close\r\n"
	case status != 200:
		s += "Content-Length: 0\r\nConnection: close\r\n"
	}
	return []byte(s + "\r\n")
}
