package admitlog

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// ParsePacket reads an admission from the start of a packet (its network
// header on): family is unix.AF_INET or unix.AF_INET6. It needs the IP
// header and the TCP ports and sequence number; anything else is false.
func ParsePacket(family byte, p []byte) (Admission, bool) {
	var src, dst netip.Addr
	var l4 []byte
	switch family {
	case unix.AF_INET:
		if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_TCP {
			return Admission{}, false
		}
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || len(p) < ihl {
			return Admission{}, false
		}
		src = netip.AddrFrom4([4]byte(p[12:16]))
		dst = netip.AddrFrom4([4]byte(p[16:20]))
		l4 = p[ihl:]
	case unix.AF_INET6:
		// The rule matches only TCP right after the fixed header
		// (nft's "tcp" is the transport header, which the kernel finds
		// past extension headers; a SYN with them is rare): that case.
		if len(p) < 40 || p[0]>>4 != 6 || p[6] != unix.IPPROTO_TCP {
			return Admission{}, false
		}
		src = netip.AddrFrom16([16]byte(p[8:24]))
		dst = netip.AddrFrom16([16]byte(p[24:40]))
		l4 = p[40:]
	default:
		return Admission{}, false
	}
	if len(l4) < 8 {
		return Admission{}, false
	}
	return Admission{
		Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:2])),
		Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:4])),
		Seq: binary.BigEndian.Uint32(l4[4:8]),
	}, true
}
