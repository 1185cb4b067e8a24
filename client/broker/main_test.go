package broker

import (
	"os"
	"testing"

	"github.com/seqknock/seqknock/internal/netnstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	// The seqknock binaries the tests built, about 20 MB a run.
	netnstest.RemoveBuilds()
	os.Exit(code)
}
