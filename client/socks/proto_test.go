package socks

import (
	"bufio"
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestReadRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want Dest
		code int // 0: accepted; -1: an I/O error (short read)
	}{
		{"ipv4", []byte{5, 1, 0, 1, 198, 18, 0, 1, 0, 22}, Dest{Host: "198.18.0.1", Port: 22, IP: netip.MustParseAddr("198.18.0.1")}, 0},
		{"ipv6", append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 1, 187), Dest{Host: "2001:db8::1", Port: 443, IP: netip.MustParseAddr("2001:db8::1")}, 0},
		{"v4-mapped v6", append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("::ffff:198.18.0.1").AsSlice()...), 0, 22), Dest{Host: "198.18.0.1", Port: 22, IP: netip.MustParseAddr("198.18.0.1")}, 0},
		{"name", append([]byte{5, 1, 0, 3, 8}, "srv.test\x00\x16"...), Dest{Host: "srv.test", Port: 22}, 0},
		{"name that is an address", append([]byte{5, 1, 0, 3, 10}, "198.18.0.1\x00\x16"...), Dest{Host: "198.18.0.1", Port: 22, IP: netip.MustParseAddr("198.18.0.1")}, 0},
		{"bind", []byte{5, 2, 0, 1, 198, 18, 0, 1, 0, 22}, Dest{}, ReplyCommandUnsupported},
		{"udp associate", []byte{5, 3, 0, 1, 198, 18, 0, 1, 0, 22}, Dest{}, ReplyCommandUnsupported},
		{"address type 9", []byte{5, 1, 0, 9, 1, 2, 3, 4, 0, 22}, Dest{}, ReplyAddressUnsupported},
		{"port 0", []byte{5, 1, 0, 1, 198, 18, 0, 1, 0, 0}, Dest{}, ReplyGeneralFailure},
		{"empty name", []byte{5, 1, 0, 3, 0, 0, 22}, Dest{}, ReplyGeneralFailure},
		{"name with a space", append([]byte{5, 1, 0, 3, 3}, "a b\x00\x16"...), Dest{}, ReplyGeneralFailure},
		{"name with a newline", append([]byte{5, 1, 0, 3, 3}, "a\nb\x00\x16"...), Dest{}, ReplyGeneralFailure},
		{"version 4", []byte{4, 1, 0, 1, 198, 18, 0, 1, 0, 22}, Dest{}, ReplyGeneralFailure},
		{"short", []byte{5, 1, 0, 1, 198}, Dest{}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ReadRequest(bytes.NewReader(tc.in))
			var pe *ProtoError
			switch {
			case tc.code == 0 && (err != nil || d != tc.want):
				t.Fatalf("got %+v, %v; want %+v", d, err, tc.want)
			case tc.code > 0 && (!errors.As(err, &pe) || pe.Reply != tc.code):
				t.Fatalf("got %+v, %v; want reply %d", d, err, tc.code)
			case tc.code < 0 && (err == nil || errors.As(err, &pe)):
				t.Fatalf("got %+v, %v; want a read error", d, err)
			}
		})
	}
}

func TestReadGreetingAndPassword(t *testing.T) {
	if m, err := ReadGreeting(bytes.NewReader([]byte{5, 2, 0, 2})); err != nil || !bytes.Equal(m, []byte{0, 2}) {
		t.Errorf("greeting: %v %v", m, err)
	}
	for _, bad := range [][]byte{{4, 1, 0}, {5, 0}, {5, 3, 0}, {}} {
		if _, err := ReadGreeting(bytes.NewReader(bad)); err == nil {
			t.Errorf("greeting %v accepted", bad)
		}
	}
	u, p, err := ReadPassword(bytes.NewReader([]byte("\x01\x03bob\x06s3cret")))
	if err != nil || u != "bob" || p != "s3cret" {
		t.Errorf("password: %q %q %v", u, p, err)
	}
	if _, _, err := ReadPassword(bytes.NewReader([]byte("\x02\x03bob\x06s3cret"))); err == nil {
		t.Error("password version 2 accepted")
	}
}

func TestReply(t *testing.T) {
	if got := Reply(ReplyNotAllowed, netip.AddrPort{}); !bytes.Equal(got, []byte{5, 2, 0, 1, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("refusal: % x", got)
	}
	got := Reply(0, netip.MustParseAddrPort("[2001:db8::2]:40000"))
	if len(got) != 22 || got[3] != 4 || got[20] != 0x9c || got[21] != 0x40 {
		t.Errorf("v6 reply: % x", got)
	}
}

func TestReadHTTPConnect(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		host     string
		port     uint16
		status   int
	}{
		{"name", "CONNECT srv.test:22 HTTP/1.1\r\nHost: srv.test:22\r\n\r\n", "srv.test", 22, 0},
		{"ipv6", "CONNECT [2001:db8::1]:443 HTTP/1.0\r\n\r\n", "2001:db8::1", 443, 0},
		{"bare LF", "CONNECT 198.18.0.1:22 HTTP/1.1\nUser-Agent: x\n\n", "198.18.0.1", 22, 0},
		{"GET", "GET http://srv.test/ HTTP/1.1\r\n\r\n", "", 0, 405},
		{"no port", "CONNECT srv.test HTTP/1.1\r\n\r\n", "", 0, 400},
		{"port 0", "CONNECT srv.test:0 HTTP/1.1\r\n\r\n", "", 0, 400},
		{"port too big", "CONNECT srv.test:65536 HTTP/1.1\r\n\r\n", "", 0, 400},
		{"v6 unbracketed", "CONNECT 2001:db8::1:443 HTTP/1.1\r\n\r\n", "", 0, 400},
		{"HTTP/2", "CONNECT srv.test:22 HTTP/2\r\n\r\n", "", 0, 400},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", "", 0, 400},
		{"header without colon", "CONNECT srv.test:22 HTTP/1.1\r\nfoo\r\n\r\n", "", 0, 400},
		{"oversized line", "CONNECT srv.test:22 HTTP/1.1\r\nX: " + strings.Repeat("a", MaxHTTPHeader) + "\r\n\r\n", "", 0, 431},
		{"oversized total", "CONNECT srv.test:22 HTTP/1.1\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 200)+"\r\n", 60) + "\r\n", "", 0, 431},
		{"too many headers", "CONNECT srv.test:22 HTTP/1.1\r\n" + strings.Repeat("X: a\r\n", 100) + "\r\n", "", 0, 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ReadHTTPConnect(bufio.NewReaderSize(strings.NewReader(tc.in), 4096))
			var pe *ProtoError
			switch {
			case tc.status == 0 && (err != nil || req.Dest.Host != tc.host || req.Dest.Port != tc.port):
				t.Fatalf("got %+v, %v; want %s port %d", req, err, tc.host, tc.port)
			case tc.status != 0 && (!errors.As(err, &pe) || pe.Reply != tc.status):
				t.Fatalf("got %+v, %v; want status %d", req, err, tc.status)
			}
		})
	}
	req, err := ReadHTTPConnect(bufio.NewReader(strings.NewReader("CONNECT a:1 HTTP/1.1\r\nproxy-authorization: Basic Ym9iOnMzOmNyZXQ=\r\n\r\n")))
	if err != nil || !req.HasAuth || req.User != "bob" || req.Password != "s3:cret" {
		t.Errorf("basic auth: %+v %v", req, err)
	}
}

// FuzzReadRequest: no input makes the parsers panic, read past their
// bounds, or accept a destination that is not a valid name or address.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte{5, 1, 0, 1, 198, 18, 0, 1, 0, 22})
	f.Add(append([]byte{5, 1, 0, 3, 8}, "srv.test\x00\x16"...))
	f.Add([]byte("CONNECT srv.test:22 HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		check := func(d Dest) {
			if d.Port == 0 || (d.IP.IsValid() && d.Host != d.IP.String()) || (!d.IP.IsValid() && checkName(d.Host) != nil) {
				t.Fatalf("accepted %+v", d)
			}
		}
		if d, err := ReadRequest(bytes.NewReader(in)); err == nil {
			check(d)
		}
		if req, err := ReadHTTPConnect(bufio.NewReaderSize(bytes.NewReader(in), 4096)); err == nil {
			check(req.Dest)
		}
	})
}
