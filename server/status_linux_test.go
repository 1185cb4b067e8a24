//go:build linux

package server

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestStatusExitCode runs `seqknockd status` against a real table: 0 when
// current, 3 after `nft delete table` and after a config change of ports
// not yet synced, saying what differs, in text and in --json.
func TestStatusExitCode(t *testing.T) {
	ns, bin, dir, cfg, text := binBed(t, "sstat")
	status := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		// The table alone: no daemon runs here (see TestStatusDaemonLiveness).
		cmd := ns.Command(bin, append([]string{"--config", cfg, "status", "--no-daemon", "--runtime-dir", filepath.Join(dir, "run")}, args...)...)
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), code
	}
	expect := func(when string, code int, says string) {
		t.Helper()
		out, errOut, got := status()
		if got != code || !strings.Contains(out+errOut, says) {
			t.Errorf("%s: exit %d, want %d saying %q:\n%s%s", when, got, code, says, out, errOut)
		}
		if code != 0 && (strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, says)) {
			t.Errorf("%s: stderr is not one line saying %q: %q", when, says, errOut)
		}
		jout, _, jcode := status("--json")
		var st Status
		if err := json.Unmarshal([]byte(jout), &st); err != nil || jcode != code || st.Current != (code == 0) ||
			(code != 0 && !strings.Contains(strings.Join(st.Differences, "\n"), says)) {
			t.Errorf("%s: --json exit %d (want %d), err %v:\n%s", when, jcode, code, err, jout)
		}
	}
	expect("before any sync", 3, "table inet seqknock is not installed")
	ns.MustRun(bin, "--config", cfg, "sync")
	expect("after sync", 0, "(current)")
	ns.MustRun("nft", "delete", "table", "inet", "seqknock")
	expect("after nft delete table", 3, "table inet seqknock is not installed")
	ns.MustRun(bin, "--config", cfg, "sync")
	expect("after the second sync", 0, "(current)")
	os.WriteFile(cfg, []byte(text+"[[service]]\nport = 2223\n"), 0o600)
	expect("after a port was added to the config", 3, "port 2223 is in the config but not protected")
	os.WriteFile(cfg, []byte(text+"[[user]]\nname = \"carol\"\nkey_file = \"alice.key\"\n"), 0o600)
	// carol has alice's key here, so her knocks are in the table: only a
	// user with knocks of her own is missing.
	expect("after a user with a known key was added", 0, "(current)")
	os.WriteFile(filepath.Join(dir, "carol.key"), []byte(base64.StdEncoding.EncodeToString([]byte("carol-key-0123456789abcdefghijklmnop"))+"\n"), 0o600)
	os.WriteFile(cfg, []byte(text+"[[user]]\nname = \"carol\"\nkey_file = \"carol.key\"\n"), 0o600)
	expect("after a user was added", 3, "user carol has no knocks in the table")
	ns.MustRun(bin, "--config", cfg, "sync")
	expect("after syncing the new config", 0, "(current)")
}

// binBed is a namespace, the seqknockd binary, and a directory with alice's
// and bob's keys and the config tbConfig (30 s) at cfg, whose text it
// returns: the setting of the tests that run the binary.
func binBed(t *testing.T, role string) (ns *netnstest.NS, bin, dir, cfg, text string) {
	t.Helper()
	netnstest.RequireRoot(t)
	ns = netnstest.New(t, role)
	bin = netnstest.Build(t, "server/cmd/seqknockd")
	dir = t.TempDir()
	for _, n := range []string{"alice", "bob"} {
		os.WriteFile(filepath.Join(dir, n+".key"), []byte(base64.StdEncoding.EncodeToString([]byte(n+"-key-0123456789abcdefghijklmnop"))+"\n"), 0o600)
	}
	cfg = filepath.Join(dir, "seqknockd.toml")
	text = fmt.Sprintf(tbConfig, "30s", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return
}
