//go:build seqknockcover

package covhook

import (
	"os"
	"runtime/coverage"
)

// Dir is where the counters go, set at build time with
// -ldflags=-X=github.com/seqknock/seqknock/internal/covhook.Dir=DIR.
var Dir string

// init runs before the main package's, where the coverage runtime reads
// GOCOVERDIR.
func init() {
	if Dir != "" {
		os.Setenv("GOCOVERDIR", Dir)
	}
}

// Flush writes the counters so far: call it before an execve or a signal
// ends the process.
func Flush() {
	if Dir != "" {
		coverage.WriteCountersDir(Dir) // needs -covermode=atomic
	}
}
