package main

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The commands run here keep no state file unless a test names one:
	// the default is a path on the host, shared by every test.
	os.Setenv("SEQKNOCKD_STATE", "none")
	// Their run locks go to a temp dir, not the host's /run.
	dir, err := os.MkdirTemp("", "seqknockd-run-")
	if err != nil {
		panic(err)
	}
	os.Setenv("SEQKNOCKD_RUNTIME_DIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
