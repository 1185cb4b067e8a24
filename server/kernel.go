package server

import (
	"context"
	"time"

	"github.com/seqknock/seqknock/admitlog"
	"github.com/seqknock/seqknock/nftgen"
)

// Kernel is the seam between the daemon and the kernel: one small
// interface per job, each filled whole, so a test stands in for a job
// without knowing the others. NewKernel fills them for a network
// namespace.
type Kernel struct {
	Table     Table
	Feeds     Feeds
	Sessions  Sessions
	Listeners Listeners
}

// Table is the daemon's nftables table: an *nftgen.Conn, whose methods
// say what each does. A nil channel from Watch reports no change, so
// every sync is whole.
type Table interface {
	Apply(s nftgen.State, now time.Time) (nftgen.Result, error)
	AddValid(s nftgen.State, now time.Time) (nftgen.Result, error)
	Read(table string) (*nftgen.Live, error)         // with element counts
	ReadCounters(table string) (*nftgen.Live, error) // without them: cheap
	Teardown(table string) (bool, error)
	Watch(ctx context.Context, table string) (<-chan struct{}, error)
	Spent(table string, now time.Time) ([]nftgen.Element, error)
}

// Feeds are what the kernel tells the daemon as it happens.
type Feeds interface {
	// Admissions binds an nflog group: the admit rule's (see package
	// admitlog), or the drop rule's samples.
	Admissions(group uint16) (AdmissionFeed, error)
	// ConntrackLost reports when conntrack forgets connections (see
	// hostconns.WatchLost); a nil channel never does.
	ConntrackLost(ctx context.Context) (<-chan struct{}, error)
}

// AdmissionFeed is an *admitlog.Listener: Ready signals that admissions
// may be queued, Drain returns them all without blocking.
type AdmissionFeed interface {
	Ready() <-chan struct{}
	Drain() ([]admitlog.Admission, error)
	Close() error
}

// Sessions are the host's connections to the protected ports and the
// table's sessions sets that admit their mid-stream pickup.
type Sessions interface {
	// Established returns the connections on the host to ports (see
	// package hostconns).
	Established(ports []uint16) ([]nftgen.Session, error)
	ApplySessions(table string, ss []nftgen.Session) error // nftgen.Conn's
	AddSessions(table string, ss []nftgen.Session) error
}

// Listeners are the listening sockets of the protected ports, which the
// daemon signs (package tcpsign) and locks (package listenlock).
type Listeners interface {
	// List returns the listening sockets of port, each with whether it
	// signs with key.
	List(port uint16, key []byte) ([]ListenerState, error)
	// Sign is List that also puts key on those that do not sign with it.
	Sign(port uint16, key []byte) ([]ListenerState, error)
	// Lock duplicates each listening socket of ls from a process that
	// holds it and reads whether it has the socket filter for packet
	// mark bit; with attach it also puts the filter on. It returns a
	// result per listener, in ls's order.
	Lock(ls []ListenerState, bit uint32, attach bool) []LockResult
	// Unlock removes that filter (for any bit; another filter stays) and
	// reports whether there was one.
	Unlock(inode uint32) (bool, error)
	// OtherNetns describes the listeners of port in the other network
	// namespaces that processes here live in ("ADDR (network namespace
	// of pid N)"): ones neither the table nor the lock reach. For status
	// and check-config only (it walks /proc).
	OtherNetns(port uint16) ([]string, error)
}

// NoListeners are the Listeners of a kernel where the daemon keeps only
// the table (its tests): there are none, so none is signed or locked and
// the daemon does not poll for new ones.
var NoListeners Listeners = noListeners{}

type noListeners struct{}

func (noListeners) List(uint16, []byte) ([]ListenerState, error) { return nil, nil }
func (noListeners) Sign(uint16, []byte) ([]ListenerState, error) { return nil, nil }
func (noListeners) Lock(ls []ListenerState, _ uint32, _ bool) []LockResult {
	return make([]LockResult, len(ls))
}
func (noListeners) Unlock(uint32) (bool, error)         { return false, nil }
func (noListeners) OtherNetns(uint16) ([]string, error) { return nil, nil }
