//go:build linux

package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// BrokerTimeout bounds one exchange with the broker.
const BrokerTimeout = 2 * time.Second

// BrokerClient asks a broker to set the ISN of this process's sockets. It
// keeps one connection, made by Check, for the requests that follow.
type BrokerClient struct {
	Path string
	conn *net.UnixConn
}

// BrokerError is the broker's refusal, or why it could not be asked.
type BrokerError struct {
	Path   string
	Reason string
	// Missing says there is no broker at Path.
	Missing bool
}

func (e *BrokerError) Error() string {
	return "broker " + e.Path + ": " + e.Reason
}

// Check connects to the broker and reads its greeting, "ok" when it will
// serve this process; on a connection already open it asks again. No
// socket is sent, so no knock is spent.
func (b *BrokerClient) Check() error {
	if b.conn == nil {
		return b.connect()
	}
	return b.request([]byte(brokerMagic), -1)
}

// SetISN has the broker set the ISN of fd, an unconnected TCP socket.
func (b *BrokerClient) SetISN(fd int, isn uint32) error {
	if b.conn == nil {
		if err := b.connect(); err != nil {
			return err
		}
	}
	msg := make([]byte, brokerRequestLen)
	copy(msg, brokerMagic)
	binary.BigEndian.PutUint32(msg[len(brokerMagic):], isn)
	return b.request(msg, fd)
}

// Close ends the connection to the broker.
func (b *BrokerClient) Close() error {
	if b.conn == nil {
		return nil
	}
	err := b.conn.Close()
	b.conn = nil
	return err
}

// connect dials the broker and reads its greeting. A "busy" broker (too
// many connections in flight) is dialled again, after 1 ms doubling, for
// up to BrokerTimeout.
func (b *BrokerClient) connect() error {
	deadline := time.Now().Add(BrokerTimeout)
	for wait := time.Millisecond; ; wait *= 2 {
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: b.Path, Net: "unixpacket"})
		if err != nil {
			be := &BrokerError{Path: b.Path, Reason: errReason(err)}
			be.Missing = errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED)
			return be
		}
		b.conn = c
		c.SetDeadline(deadline)
		err = b.answer(nil)
		var be *BrokerError
		if err == nil || !errors.As(err, &be) || !strings.HasPrefix(be.Reason, brokerRefused+"busy") || time.Now().Add(wait).After(deadline) {
			return err
		}
		time.Sleep(min(wait, 100*time.Millisecond))
	}
}

// request sends one request and reads its answer.
func (b *BrokerClient) request(msg []byte, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	b.conn.SetDeadline(time.Now().Add(BrokerTimeout))
	_, _, werr := b.conn.WriteMsgUnix(msg, oob, nil)
	return b.answer(werr)
}

// answer reads one answer. A broker that refuses (not a member) answers
// and closes without reading what was sent: its answer is still there to
// read after a failed write (werr), and after the reset its close reports.
func (b *BrokerClient) answer(werr error) error {
	fail := func(err error) error {
		b.Close()
		return &BrokerError{Path: b.Path, Reason: errReason(err)}
	}
	buf := make([]byte, brokerMaxReply)
	n, err := b.conn.Read(buf)
	if errors.Is(err, syscall.ECONNRESET) {
		n, err = b.conn.Read(buf)
	}
	if err != nil || n == 0 {
		if werr != nil {
			return fail(werr)
		}
		if err == nil {
			err = errors.New("closed without an answer")
		}
		return fail(err)
	}
	ans := string(buf[:n])
	if ans == brokerOK {
		return nil
	}
	b.Close()
	if strings.HasPrefix(ans, brokerRefused) {
		return &BrokerError{Path: b.Path, Reason: ans}
	}
	return &BrokerError{Path: b.Path, Reason: fmt.Sprintf("unexpected answer %q", ans)}
}

// errReason is err without the operation prefixes net adds.
func errReason(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "no answer within " + BrokerTimeout.String()
	}
	return err.Error()
}

// NoPrivilegeError says that this process may not set an ISN itself and
// the broker did not do it for it, with both fixes. It wraps
// ErrNoCapability.
type NoPrivilegeError struct {
	Broker string
	// Err is the broker's answer or why it could not be asked.
	Err *BrokerError
}

func (e *NoPrivilegeError) Error() string {
	var why string
	if e.Err.Missing {
		why = "and there is no broker at " + e.Broker + ": install it (systemctl enable --now seqknock-broker.socket) and join its group (seqknock)"
	} else {
		why = "and the broker at " + e.Broker + " refused: " + strings.TrimPrefix(e.Err.Reason, brokerRefused) +
			": join its group (seqknock), then log in again"
	}
	return "setting the TCP initial sequence number needs CAP_NET_ADMIN, " + why +
		", or give seqknock the capability: sudo setcap cap_net_admin+ep $(command -v seqknock)"
}

func (e *NoPrivilegeError) Unwrap() error { return ErrNoCapability }

// privilege picks how this dial sets ISNs, before any slot is reserved or
// packet sent: with CheckCapability set (a seam), that check and SetISN;
// otherwise this process itself when it holds CAP_NET_ADMIN, else the
// broker at d.Broker when it answers (its connection is closed by done),
// else a NoPrivilegeError.
func (d *Dialer) privilege() (set func(fd int, isn uint32) error, done func(), err error) {
	done = func() {}
	if d.CheckCapability != nil {
		return d.SetISN, done, d.CheckCapability()
	}
	if d.SetISN != nil {
		return d.SetISN, done, nil
	}
	if err := CheckCapability(); !errors.Is(err, ErrNoCapability) {
		return nil, done, err
	}
	path := d.Broker
	if path == "" {
		path = DefaultBrokerPath
	}
	bc := &BrokerClient{Path: path}
	if err := bc.Check(); err != nil {
		be, ok := err.(*BrokerError)
		if !ok {
			be = &BrokerError{Path: path, Reason: err.Error()}
		}
		return nil, done, &NoPrivilegeError{Broker: path, Err: be}
	}
	if d.OnBroker != nil {
		d.OnBroker(path)
	}
	return bc.SetISN, func() { bc.Close() }, nil
}

// PrivilegeNote says in one line how seqknock, run by this user, will set
// the ISN: "" when this process holds CAP_NET_ADMIN (setcap, root), the
// broker at path when it answers, or what is missing.
func PrivilegeNote(path string) string {
	if CheckCapability() == nil {
		return ""
	}
	bc := &BrokerClient{Path: path}
	defer bc.Close()
	err := bc.Check()
	if err == nil {
		return "needs neither sudo nor setcap: the broker at " + path + " sets the ISN"
	}
	be, ok := err.(*BrokerError)
	if !ok {
		be = &BrokerError{Path: path, Reason: err.Error()}
	}
	return "not ready: " + (&NoPrivilegeError{Broker: path, Err: be}).Error()
}
