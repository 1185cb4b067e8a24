//go:build linux

package admitlog

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// tcpHeader is the first 8 bytes of a TCP header: ports and sequence.
func tcpHeader(sport, dport uint16, seq uint32) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	return b
}

func ipv4Packet(proto byte, ihl int, l4 []byte) []byte {
	p := make([]byte, ihl*4)
	p[0] = 4<<4 | byte(ihl)
	p[9] = proto
	copy(p[12:], []byte{198, 18, 0, 2})
	copy(p[16:], []byte{198, 18, 0, 1})
	return append(p, l4...)
}

func ipv6Packet(next byte, l4 []byte) []byte {
	p := make([]byte, 40)
	p[0] = 6 << 4
	p[6] = next
	a := netip.MustParseAddr("2001:db8::2").As16()
	copy(p[8:], a[:])
	a = netip.MustParseAddr("2001:db8::1").As16()
	copy(p[24:], a[:])
	return append(p, l4...)
}

// TestParsePacket: the ports and sequence number of a TCP packet over
// IPv4 (with options) and IPv6; anything short, not TCP, or of another
// family is refused.
func TestParsePacket(t *testing.T) {
	tcp := tcpHeader(50000, 22, 0xa37ba9d5)
	v4 := Admission{Src: netip.MustParseAddrPort("198.18.0.2:50000"), Dst: netip.MustParseAddrPort("198.18.0.1:22"), Seq: 0xa37ba9d5}
	v6 := Admission{Src: netip.MustParseAddrPort("[2001:db8::2]:50000"), Dst: netip.MustParseAddrPort("[2001:db8::1]:22"), Seq: 0xa37ba9d5}
	for _, tc := range []struct {
		name   string
		family byte
		p      []byte
		want   Admission
		ok     bool
	}{
		{"ipv4", unix.AF_INET, ipv4Packet(unix.IPPROTO_TCP, 5, tcp), v4, true},
		{"ipv4 with options", unix.AF_INET, ipv4Packet(unix.IPPROTO_TCP, 7, tcp), v4, true},
		{"ipv6", unix.AF_INET6, ipv6Packet(unix.IPPROTO_TCP, tcp), v6, true},
		{"ipv4 udp", unix.AF_INET, ipv4Packet(unix.IPPROTO_UDP, 5, tcp), Admission{}, false},
		{"ipv4 short", unix.AF_INET, ipv4Packet(unix.IPPROTO_TCP, 5, nil)[:19], Admission{}, false},
		{"ipv4 header length below 20", unix.AF_INET, ipv4Packet(unix.IPPROTO_TCP, 4, append(make([]byte, 4), tcp...)), Admission{}, false},
		{"ipv4 header longer than the packet", unix.AF_INET, ipv4Packet(unix.IPPROTO_TCP, 15, nil)[:40], Admission{}, false},
		{"ipv4 tcp header short", unix.AF_INET, ipv4Packet(unix.IPPROTO_TCP, 5, tcp[:7]), Admission{}, false},
		{"ipv6 extension header", unix.AF_INET6, ipv6Packet(0, tcp), Admission{}, false},
		{"ipv6 short", unix.AF_INET6, ipv6Packet(unix.IPPROTO_TCP, nil)[:39], Admission{}, false},
		{"ipv6 in an ipv4 family", unix.AF_INET, ipv6Packet(unix.IPPROTO_TCP, tcp), Admission{}, false},
		{"other family", unix.AF_UNIX, ipv4Packet(unix.IPPROTO_TCP, 5, tcp), Admission{}, false},
	} {
		got, ok := ParsePacket(tc.family, tc.p)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: %+v %v, want %+v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// nflogMessage is one netlink message as nfnetlink_log sends it: the
// nfgenmsg (family first) and the attributes.
func nflogMessage(t *testing.T, typ uint16, family byte, attrs []netlink.Attribute) []byte {
	t.Helper()
	body, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	data := append([]byte{family, 0, 0, 0}, body...)
	b := make([]byte, syscall.NLMSG_HDRLEN, syscall.NLMSG_HDRLEN+len(data))
	binary.NativeEndian.PutUint32(b[0:], uint32(syscall.NLMSG_HDRLEN+len(data)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	b = append(b, data...)
	for len(b)%syscall.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// TestParseMessages: the payload of every packet message in a datagram;
// other message types, other attributes, undecodable packets and a
// damaged datagram give nothing.
func TestParseMessages(t *testing.T) {
	pkt := uint16(nfnlSubsysULOG<<8 | nfulnlMsgPacket)
	tcp := tcpHeader(50000, 22, 7)
	var dgram []byte
	dgram = append(dgram, nflogMessage(t, pkt, unix.AF_INET, []netlink.Attribute{
		{Type: 1, Data: []byte{0, 0, 0, 0}}, // not the payload
		{Type: nfulaPayload, Data: ipv4Packet(unix.IPPROTO_TCP, 5, tcp)},
	})...)
	dgram = append(dgram, nflogMessage(t, nfnlSubsysULOG<<8|1, unix.AF_INET, []netlink.Attribute{
		{Type: nfulaPayload, Data: ipv4Packet(unix.IPPROTO_TCP, 5, tcp)}, // a config message
	})...)
	dgram = append(dgram, nflogMessage(t, pkt, unix.AF_INET, []netlink.Attribute{
		{Type: nfulaPayload, Data: ipv4Packet(unix.IPPROTO_UDP, 5, tcp)}, // not TCP
	})...)
	dgram = append(dgram, nflogMessage(t, pkt, unix.AF_INET6, []netlink.Attribute{
		{Type: nfulaPayload, Data: ipv6Packet(unix.IPPROTO_TCP, tcp)},
	})...)
	got := parseMessages(dgram)
	want := []Admission{
		{Src: netip.MustParseAddrPort("198.18.0.2:50000"), Dst: netip.MustParseAddrPort("198.18.0.1:22"), Seq: 7},
		{Src: netip.MustParseAddrPort("[2001:db8::2]:50000"), Dst: netip.MustParseAddrPort("[2001:db8::1]:22"), Seq: 7},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := parseMessages(dgram[:10]); got != nil {
		t.Errorf("damaged datagram: %+v", got)
	}
	// A packet message too short for its nfgenmsg, and one whose
	// attributes do not decode.
	short := nflogMessage(t, pkt, unix.AF_INET, nil)
	binary.NativeEndian.PutUint32(short[0:], syscall.NLMSG_HDRLEN+2)
	bad := nflogMessage(t, pkt, unix.AF_INET, nil)
	bad = append(bad[:syscall.NLMSG_HDRLEN+4], 0xff, 0x00, 0x09, 0x00)
	binary.NativeEndian.PutUint32(bad[0:], uint32(len(bad)))
	for name, b := range map[string][]byte{"short": short, "bad attributes": bad} {
		if got := parseMessages(b); len(got) != 0 {
			t.Errorf("%s: %+v", name, got)
		}
	}
}
