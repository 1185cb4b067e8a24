package main

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The commands run here keep no state file unless a test names one:
	// the default is a path on the host, shared by every test.
	os.Setenv("SEQKNOCKD_STATE", "none")
	os.Exit(m.Run())
}
