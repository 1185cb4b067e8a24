package server

import (
	"time"

	"github.com/seqknock/seqknock/nftgen"
)

// Kernel is the seam between the daemon and nftables: small function fields,
// so tests can stand in for any of them. NewKernel fills them from an
// nftgen.Conn.
type Kernel struct {
	Apply    func(s nftgen.State, now time.Time) (nftgen.Result, error)
	Read     func(table string) (*nftgen.Live, error) // with element counts
	Counters func(table string) (*nftgen.Live, error) // without them: cheap
	Teardown func(table string) (bool, error)
}
