package broker

import (
	"encoding/binary"
	"io"
	"net"
)

// DefaultPath is where the broker listens (seqknock-broker.socket).
const DefaultPath = "/run/seqknock/broker.sock"

// DefaultGroup is the group whose members may use the broker.
const DefaultGroup = "seqknock"

// The broker's wire format (see doc.go).
const (
	brokerMagic      = "skb1"
	brokerRequestLen = 8   // magic, u32be ISN
	brokerPortLen    = 10  // magic, u32be ISN, u16be source port
	brokerMaxReply   = 256 // bytes of one answer
	brokerOK         = "ok"
	brokerRefused    = "refused: "
	// brokerPortInUse, followed by the port, refuses a source port that
	// is in use here: the client skips that knock's slot.
	brokerPortInUse = brokerRefused + "source port in use: "
	// brokerNotMember ends the refusal of a caller outside the group,
	// followed by the group's name: the client names it in its advice.
	brokerNotMember = " is neither root nor in group "
	// brokerMaxFDs is how many descriptors one read makes room for, so
	// that a request carrying more than one is seen (and every one of them
	// closed) rather than cut by the kernel.
	brokerMaxFDs = 8
	// brokerMaxRequests bounds the requests of one connection.
	brokerMaxRequests = 64
	// brokerMinPort is the lowest source port a request may name: the
	// ports below it are privileged, and no knock reserves one.
	brokerMinPort = 1024
)

// encodeRequest is the request to bind a socket to sport (0: the
// broker's pick) and set its ISN.
func encodeRequest(isn uint32, sport uint16) [brokerPortLen]byte {
	var msg [brokerPortLen]byte
	copy(msg[:], brokerMagic)
	binary.BigEndian.PutUint32(msg[len(brokerMagic):], isn)
	binary.BigEndian.PutUint16(msg[brokerRequestLen:], sport)
	return msg
}

// readMsg reads one message of a SOCK_SEQPACKET connection, read again
// once when it reports the end of the connection: the kernel looks at the
// queue before it looks for the peer's shutdown, so a read that runs
// while the peer sends its last message and shuts down (or closes) can
// report the end with that message in the queue; the second read finds
// it. The end is io.EOF.
func readMsg(c *net.UnixConn, p, oob []byte) (n, oobn, flags int, err error) {
	for range 2 {
		n, oobn, flags, _, err = c.ReadMsgUnix(p, oob)
		if err != nil && err != io.EOF || n > 0 || oobn > 0 {
			return n, oobn, flags, err
		}
	}
	return n, oobn, flags, err
}
