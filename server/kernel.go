package server

import (
	"context"
	"time"

	"github.com/seqknock/seqknock/admitlog"
	"github.com/seqknock/seqknock/nftgen"
)

// Kernel is the seam between the daemon and nftables: small function fields,
// so tests can stand in for any of them. NewKernel fills them from an
// nftgen.Conn.
type Kernel struct {
	Apply func(s nftgen.State, now time.Time) (nftgen.Result, error)
	// AddValid adds s's knocks to the valid set, flushing nothing (a
	// rotation; see nftgen.Conn.AddValid); nil: every sync is whole.
	AddValid func(s nftgen.State, now time.Time) (nftgen.Result, error)
	Read     func(table string) (*nftgen.Live, error) // with element counts
	Counters func(table string) (*nftgen.Live, error) // without them: cheap
	Teardown func(table string) (bool, error)
	// Watch reports changes to table made by anyone but this Kernel (see
	// nftgen.Conn.Watch); nil: the daemon does not watch.
	Watch func(ctx context.Context, table string) (<-chan struct{}, error)
	// Spent reads the knocks in table's used set (see nftgen.Conn.Spent);
	// nil: none are read.
	Spent func(table string, now time.Time) ([]nftgen.Element, error)
	// Admissions binds the nflog group the admit rule logs to (see package
	// admitlog); nil: the daemon learns spent knocks only from Spent.
	Admissions func(group uint16) (AdmissionFeed, error)
	// Sessions returns the connections on the host to ports (see package
	// hostconns); nil: none, so no mid-stream pickup is admitted.
	Sessions func(ports []uint16) ([]nftgen.Session, error)
	// ApplySessions refills only the table's sessions sets.
	ApplySessions func(table string, ss []nftgen.Session) error
	// AddSessions adds to the sessions sets, flushing nothing: admitted
	// connections, as soon as the daemon reads their admission (nil: they
	// get in at the next refill).
	AddSessions func(table string, ss []nftgen.Session) error
	// ConntrackLost reports when conntrack forgets connections (see
	// hostconns.WatchLost); nil: the sessions are refreshed at each sync
	// only.
	ConntrackLost func(ctx context.Context) (<-chan struct{}, error)
	// Listeners returns the listening sockets of port, each with whether
	// it signs with key (see package tcpsign); SignListeners also puts key
	// on those that do not. nil: signed services are not supported.
	Listeners     func(port uint16, key []byte) ([]ListenerState, error)
	SignListeners func(port uint16, key []byte) ([]ListenerState, error)
	// LockListener duplicates the listening socket inode from the process
	// that holds it and reads whether it has the socket filter for packet
	// mark bit; with attach it also puts the filter on (see package
	// listenlock). nil: listeners are not locked.
	LockListener func(inode uint32, bit uint32, attach bool) LockResult
}

// AdmissionFeed is an *admitlog.Listener: Ready signals that admissions
// may be queued, Drain returns them all without blocking.
type AdmissionFeed interface {
	Ready() <-chan struct{}
	Drain() ([]admitlog.Admission, error)
	Close() error
}
