//go:build linux

package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// BrokerTimeout bounds one exchange with the broker.
const BrokerTimeout = 2 * time.Second

// BrokerClient asks a broker to set the ISN of this process's sockets. It
// keeps one connection for the requests that follow.
type BrokerClient struct {
	Path    string
	conn    *net.UnixConn
	greeted bool // the broker's greeting has been read
}

// BrokerError is the broker's refusal, or why it could not be asked.
type BrokerError struct {
	Path   string
	Reason string
	// Missing says there is no broker at Path.
	Missing bool
	// Group is the broker's group when known: named in its refusal, or
	// the group of its socket when the socket's mode kept this user out.
	Group string
}

func (e *BrokerError) Error() string {
	return "broker " + e.Path + ": " + e.Reason
}

// Connect connects to the broker without waiting for it: no broker at the
// path, or a socket this user may not connect to (its mode keeps
// non-members out), fails here, at once. The broker's own answer (its
// greeting) is read with the first request.
func (b *BrokerClient) Connect() error {
	if b.conn != nil {
		return nil
	}
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: b.Path, Net: "unixpacket"})
	if err != nil {
		be := &BrokerError{Path: b.Path, Reason: errReason(err)}
		be.Missing = errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED)
		if errors.Is(err, os.ErrPermission) {
			be.Group = socketGroup(b.Path)
		}
		return be
	}
	b.conn, b.greeted = c, false
	return nil
}

// Check connects to the broker and waits for its answer, "ok" when it will
// serve this process. No socket is sent.
func (b *BrokerClient) Check() error {
	return b.retryBusy(func() error {
		if b.greeted {
			return b.request([]byte(brokerMagic), -1)
		}
		b.conn.SetDeadline(time.Now().Add(BrokerTimeout))
		return b.greeting(nil)
	})
}

// SetISN has the broker set the ISN of fd, an unconnected TCP socket.
func (b *BrokerClient) SetISN(fd int, isn uint32) error {
	msg := make([]byte, brokerRequestLen)
	copy(msg, brokerMagic)
	binary.BigEndian.PutUint32(msg[len(brokerMagic):], isn)
	return b.retryBusy(func() error { return b.request(msg, fd) })
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

// retryBusy connects when needed and runs do; a broker that greets with
// "busy" (too many connections in flight) is connected to again and do
// repeated, after 1 ms doubling, for up to BrokerTimeout.
func (b *BrokerClient) retryBusy(do func() error) error {
	deadline := time.Now().Add(BrokerTimeout)
	for wait := time.Millisecond; ; wait *= 2 {
		if err := b.Connect(); err != nil {
			return err
		}
		err := do()
		var be *BrokerError
		if err == nil || !errors.As(err, &be) || !strings.HasPrefix(be.Reason, brokerRefused+"busy") || time.Now().Add(wait).After(deadline) {
			return err
		}
		time.Sleep(min(wait, 100*time.Millisecond))
	}
}

// request sends one request and reads its answer, after the greeting when
// that is still unread (the request then costs one round trip, not two).
func (b *BrokerClient) request(msg []byte, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	b.conn.SetDeadline(time.Now().Add(BrokerTimeout))
	_, _, werr := b.conn.WriteMsgUnix(msg, oob, nil)
	if err := b.greeting(werr); err != nil {
		return err
	}
	return b.answer(werr)
}

// greeting reads the broker's greeting unless it has been read.
func (b *BrokerClient) greeting(werr error) error {
	if b.greeted {
		return nil
	}
	if err := b.answer(werr); err != nil {
		return err
	}
	b.greeted = true
	return nil
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
		return &BrokerError{Path: b.Path, Reason: ans, Group: refusedGroup(ans)}
	}
	return &BrokerError{Path: b.Path, Reason: fmt.Sprintf("unexpected answer %q", ans)}
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
	// The group the broker is configured with, when it or its socket told;
	// the default one otherwise (no broker installed yet).
	group := e.Err.Group
	if group == "" {
		group = DefaultBrokerGroup
	}
	var why string
	if e.Err.Missing {
		why = "and there is no broker at " + e.Broker + ": install it (systemctl enable --now seqknock-broker.socket) and join its group (" + group + ")"
	} else {
		why = "and the broker at " + e.Broker + " refused: " + strings.TrimPrefix(e.Err.Reason, brokerRefused) +
			": join its group (" + group + "), then log in again"
	}
	return "setting the TCP initial sequence number needs CAP_NET_ADMIN, " + why +
		", or give seqknock the capability: sudo setcap cap_net_admin+ep $(command -v seqknock)"
}

func (e *NoPrivilegeError) Unwrap() error { return ErrNoCapability }

// privilege picks how this dial sets ISNs, before any slot is reserved or
// packet sent: with CheckCapability set (a seam), that check and SetISN;
// otherwise this process itself when it holds CAP_NET_ADMIN, else the
// broker at d.Broker when it can connect to it (its connection is closed
// by done), else a NoPrivilegeError. It does not wait for the broker's
// greeting (that would cost a round trip of every dial): a non-member is
// kept out by the socket's mode and fails here; the broker's own refusal
// (with a socket open to all) comes with the first request, before any
// packet is sent but after a slot was reserved in the slot store.
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
	if err := bc.Connect(); err != nil {
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
