//go:build linux

package client

import (
	"cmp"
	"errors"

	"github.com/seqknock/seqknock/client/broker"
)

// NoPrivilegeError says that this process may not set an ISN itself and
// the broker did not do it for it, with both fixes. It wraps
// ErrNoCapability.
type NoPrivilegeError struct {
	Broker string
	// Err is the broker's answer or why it could not be asked.
	Err *broker.Error
}

func (e *NoPrivilegeError) Error() string {
	// The group the broker is configured with, when it or its socket told;
	// the default one otherwise (no broker installed yet).
	group := cmp.Or(e.Err.Group, broker.DefaultGroup)
	var why string
	if e.Err.Missing {
		why = "and there is no broker at " + e.Broker + ": install it (systemctl enable --now seqknock-broker.socket) and join its group (" + group + ")"
	} else {
		why = "and the broker at " + e.Broker + " refused: " + e.Err.Refusal() +
			": join its group (" + group + "), then log in again"
	}
	return "setting the TCP initial sequence number needs CAP_NET_ADMIN, " + why +
		", or give seqknock the capability: sudo setcap cap_net_admin+ep $(command -v seqknock)"
}

func (e *NoPrivilegeError) Unwrap() error { return ErrNoCapability }

// privilege picks how this dial sets ISNs, before any slot is reserved or
// packet sent: with CheckCapability set (a seam), that check and SetISN;
// otherwise this process itself when it holds CAP_NET_ADMIN, else the
// broker at d.Broker when this process may connect to it (Available,
// which does not connect), else a NoPrivilegeError. It does not ask the
// broker (that would cost a round trip of every dial): a non-member is
// kept out by the socket's mode and fails here; the broker's own refusal
// (with a socket open to all) comes with the first request, before any
// packet is sent but after a slot was reserved in the slot store.
func (d *Dialer) privilege() (set func(fd int, isn uint32, sport uint16) error, err error) {
	if d.CheckCapability != nil {
		return d.SetISN, d.CheckCapability()
	}
	if d.SetISN != nil {
		return d.SetISN, nil
	}
	if err := CheckCapability(); !errors.Is(err, ErrNoCapability) {
		return nil, err
	}
	path := cmp.Or(d.Broker, broker.DefaultPath)
	bc := &broker.Client{Path: path}
	if err := bc.Available(); err != nil {
		return nil, noPrivilege(path, err)
	}
	if d.OnBroker != nil {
		d.OnBroker(path)
	}
	return bc.SetISNFrom, nil
}

// PrivilegeNote says in one line how seqknock, run by this user, will set
// the ISN: "" when this process holds CAP_NET_ADMIN (setcap, root), the
// broker at path when it answers, or what is missing.
func PrivilegeNote(path string) string {
	if CheckCapability() == nil {
		return ""
	}
	bc := &broker.Client{Path: path}
	if err := bc.Check(); err != nil {
		return "not ready: " + noPrivilege(path, err).Error()
	}
	return "needs neither sudo nor setcap: the broker at " + path + " sets the ISN"
}

// noPrivilege is the NoPrivilegeError for the broker at path, given why
// it could not be used (a *broker.Error, or why it could not be asked).
func noPrivilege(path string, err error) *NoPrivilegeError {
	be, ok := err.(*broker.Error)
	if !ok {
		be = &broker.Error{Path: path, Reason: err.Error()}
	}
	return &NoPrivilegeError{Broker: path, Err: be}
}
