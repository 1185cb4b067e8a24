//go:build linux

package tcpsign

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/seqknock/seqknock/hostconns"
	"golang.org/x/sys/unix"
)

// inetDiagMD5Sig is INET_DIAG_MD5SIG: the socket's TCP-MD5 keys, reported
// only to a requester with CAP_NET_ADMIN.
const inetDiagMD5Sig = 18

// inetDiagInfo is INET_DIAG_INFO, the extension the keys come with.
const inetDiagInfo = 2

// md5Entry is one struct tcp_diag_md5sig: family, prefix length, key
// length, address (16 bytes), key (80 bytes).
const md5EntrySize = 4 + 16 + MaxKeyLen

// tcpListen is TCP_LISTEN in include/net/tcp_states.h.
const tcpListen = 10

// Listener is one listening TCP socket, as sock_diag reports it.
type Listener struct {
	Local netip.AddrPort
	// Family is the socket's: AF_INET or AF_INET6 (which may take IPv4
	// peers too).
	Family int
	// UID is the socket's owner: the user that created it.
	UID uint32
	// Inode is the socket's inode number, by which /proc/PID/fd names it.
	Inode uint32
	// keys are the socket's TCP-MD5 keys; never printed.
	keys []md5Key
}

// md5Key is one of a socket's TCP-MD5 keys: its address family, prefix
// length and key (SignedWith needs no address: it looks for prefix 0).
type md5Key struct {
	family int
	prefix int
	key    []byte
}

// String never shows a key.
func (l Listener) String() string {
	return fmt.Sprintf("%s (uid %d, inode %d, %d tcp-md5 keys)", l.Local, l.UID, l.Inode, len(l.keys))
}

// GoString never shows a key.
func (l Listener) GoString() string { return l.String() }

// SignedWith reports whether the socket signs with key for every peer:
// it holds key with prefix length 0 for each address family its peers may
// have (SetListenerKey's keys).
func (l Listener) SignedWith(key []byte) bool {
	for _, a := range anyPeer(l.Family) {
		fam := unix.AF_INET6
		if a.Unmap().Is4() { // an IPv4 key, given as such or v4-mapped
			fam = unix.AF_INET
		}
		found := false
		for _, k := range l.keys {
			if k.family == fam && k.prefix == 0 && len(k.key) == len(key) && subtle.ConstantTimeCompare(k.key, key) == 1 {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Listeners returns the listening TCP sockets of the network namespace
// netns (a file descriptor; 0 is the calling thread's) on port, IPv4 and
// IPv6, with their TCP-MD5 keys when the caller has CAP_NET_ADMIN.
func Listeners(netns int, port uint16) ([]Listener, error) {
	// The kernel reports the TCP-MD5 keys with the INET_DIAG_INFO
	// extension only.
	msgs, err := hostconns.Dump(netns, 1<<tcpListen, 1<<(inetDiagInfo-1), port)
	if err != nil {
		return nil, err
	}
	var out []Listener
	for _, m := range msgs {
		if l, ok := parseListener(m); ok && l.Local.Port() == port {
			out = append(out, l)
		}
	}
	return out, nil
}

// parseListener reads a struct inet_diag_msg (family, state, timer,
// retrans, the socket id, expires, rqueue, wqueue, uid, inode) and its
// attributes.
func parseListener(b []byte) (Listener, bool) {
	const hdr = 72
	if len(b) < hdr || b[1] != tcpListen {
		return Listener{}, false
	}
	id := b[4:52]
	l := Listener{
		Family: int(b[0]),
		UID:    binary.NativeEndian.Uint32(b[64:68]),
		Inode:  binary.NativeEndian.Uint32(b[68:72]),
	}
	port := binary.BigEndian.Uint16(id[0:2])
	switch l.Family {
	case unix.AF_INET:
		l.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(id[4:8])), port)
	case unix.AF_INET6:
		l.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(id[4:20])), port)
	default:
		return Listener{}, false
	}
	ad, err := netlink.NewAttributeDecoder(b[hdr:])
	if err != nil {
		return l, true
	}
	for ad.Next() {
		if ad.Type() != inetDiagMD5Sig {
			continue
		}
		data := ad.Bytes()
		for len(data) >= md5EntrySize {
			e := data[:md5EntrySize]
			data = data[md5EntrySize:]
			k := md5Key{family: int(e[0]), prefix: int(e[1])}
			n := int(binary.NativeEndian.Uint16(e[2:4]))
			if n > MaxKeyLen {
				continue
			}
			k.key = append([]byte(nil), e[20:20+n]...)
			l.keys = append(l.keys, k)
		}
	}
	return l, true
}
