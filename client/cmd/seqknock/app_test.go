package main

import (
	"io"
	"strings"
	"testing"

	"github.com/seqknock/seqknock/internal/cliconv"
)

// TestCLIConventions: --version, exit status 2 and one line for an unknown
// command or flag or a missing operand, help text.
func TestCLIConventions(t *testing.T) {
	if out, _, code := runCLI(t, "--version"); code != 0 || out != "seqknock "+cliconv.Version()+"\n" {
		t.Errorf("--version: exit %d %q", code, out)
	}
	for _, args := range [][]string{{"bogus"}, {"--bogus"}, {"proxy", "--bogus"}, {"proxy", "--period", "x"},
		{"proxy", "host"}, {"help"}, {"keygen", "extra"}} {
		if out, e, code := runCLI(t, args...); code != 2 || strings.Count(e, "\n") != 1 || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and one line", args, code, out, e)
		}
	}
	if faults := cliconv.HelpFaults(newApp(nil, io.Discard, io.Discard), func(args ...string) string {
		out, _, _ := runCLI(t, args...)
		return out
	}); len(faults) > 0 {
		t.Errorf("help text:\n%s", strings.Join(faults, "\n"))
	}
}
