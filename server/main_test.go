package server

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// seqknockd binaries run by the tests keep no state file unless a test
	// names one: the default is a path on the host, shared by every test.
	os.Setenv("SEQKNOCKD_STATE", NoState)
	os.Exit(withRuntimeDir(m))
}

// withRuntimeDir runs m with the run locks of the seqknockd binaries the
// tests start in a temp dir, not the host's /run.
func withRuntimeDir(m *testing.M) int {
	dir, err := os.MkdirTemp("", "seqknockd-run-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	os.Setenv("SEQKNOCKD_RUNTIME_DIR", dir)
	return m.Run()
}
