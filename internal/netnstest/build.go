package netnstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// Build compiles the module's package pkg (like "client/cmd/seqknock") with
// CGO_ENABLED=0, as the release build is, and returns the binary's path. A
// binary is built once per test process.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	return build(t, pkg, false)
}

// BuildCgo is Build with CGO_ENABLED=1: the binary `go build` and `go
// install` make on a machine with a C compiler.
func BuildCgo(t testing.TB, pkg string) string {
	t.Helper()
	return build(t, pkg, true)
}

// BuildTags are the build tags of the release build (scripts/install.sh,
// scripts/package.sh): urfave_cli_no_docs leaves out urfave/cli's man and
// markdown generators, whose markdown library's package init alone costs
// about 3 ms of every start of seqknock proxy.
const BuildTags = "urfave_cli_no_docs"

func build(t testing.TB, pkg string, cgo bool) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key, name, env := pkg, filepath.Base(pkg), "CGO_ENABLED=0"
	if cgo {
		key, name, env = pkg+" cgo", filepath.Base(pkg)+"-cgo", "CGO_ENABLED=1"
	}
	if p, ok := built[key]; ok {
		return p
	}
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	if buildDir == "" {
		// Shared by the tests of this process; removed by RemoveBuilds
		// from TestMain. Named after the run (RunEnv) when there is one,
		// so the run can check that none is left.
		buildDir, err = os.MkdirTemp("", BuildDirPattern(os.Getenv(RunEnv)))
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(buildDir, 0o755)
	}
	out := filepath.Join(buildDir, name)
	cmd := exec.Command("go", append([]string{"build", "-tags", BuildTags, "-o", out}, append(coverFlags(pkg), "./"+pkg)...)...)
	cmd.Dir = strings.TrimSpace(string(root))
	cmd.Env = append(os.Environ(), env)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v: %s", pkg, err, b)
	}
	built[key] = out
	return out
}

// RunEnv names a test run (scripts/test.sh sets it): Build's directory is
// then named after it, BuildDirPattern(run).
const RunEnv = "SEQKNOCK_TEST_RUN"

// BuildDirPattern is the os.MkdirTemp pattern of Build's directory in a
// run ("" for none): seqknock-bin-RUN-*.
func BuildDirPattern(run string) string {
	if run == "" {
		return "seqknock-bin-*"
	}
	return "seqknock-bin-" + run + "-*"
}

// RemoveBuilds removes the binaries Build made; every package whose tests
// call Build calls it from TestMain after m.Run.
func RemoveBuilds() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// CoverDirEnv names the directory where, when set, the binaries of
// seqknock and seqknockd that Build makes record their coverage
// (scripts/cover.sh sets it; see internal/covhook).
const CoverDirEnv = "SEQKNOCK_COVERDIR"

// coverFlags are the go build flags of a coverage build of pkg, or none.
// Only the two commands carry internal/covhook; another binary would
// warn that GOCOVERDIR is unset where its environment is scrubbed. Atomic
// counters: covhook.Flush (runtime/coverage.WriteCountersDir) needs them.
func coverFlags(pkg string) []string {
	dir := os.Getenv(CoverDirEnv)
	if dir == "" || (pkg != "client/cmd/seqknock" && pkg != "server/cmd/seqknockd") {
		return nil
	}
	return []string{"-cover", "-covermode=atomic", "-coverpkg=github.com/seqknock/seqknock/...", "-tags=seqknockcover",
		"-ldflags=-X=github.com/seqknock/seqknock/internal/covhook.Dir=" + dir}
}
