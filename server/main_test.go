package server

import (
	"os"
	"testing"

	"github.com/seqknock/seqknock/internal/netnstest"
)

func TestMain(m *testing.M) {
	// seqknockd binaries run by the tests keep no state file unless a test
	// names one: the default is a path on the host, shared by every test.
	os.Setenv("SEQKNOCKD_STATE", NoState)
	code := m.Run()
	netnstest.RemoveBuilds()
	os.Exit(code)
}
