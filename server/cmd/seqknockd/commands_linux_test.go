//go:build linux

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
)

// onePeriod waits past the next boundary of cmdConfig's 30 s period when
// it is less than 10 s away: a test that counts the valid knocks after a
// sync needs them all still there (at a boundary the oldest counter's
// expire in the kernel).
func onePeriod() {
	if rest := time.Until(totp.NextBoundary(time.Now(), 30*time.Second)); rest < 10*time.Second {
		time.Sleep(rest + 50*time.Millisecond)
	}
}

// cmdConfig is a config with one user and two ports, its key file next to
// it.
func cmdConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	if err := os.WriteFile(filepath.Join(dir, "alice.key"), []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "seqknockd.toml")
	text := "table = \"skcmd\"\n[[service]]\nport = 22\n[[service]]\nport = 2222\nunknocked = \"reset\"\n[[user]]\nname = \"alice\"\nkey_file = \"alice.key\"\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runIn runs seqknockd with args on a thread inside ns: the netlink
// sockets the commands open belong to ns, never to the host.
func runIn(t *testing.T, ns *netnstest.NS, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ns.Do(func() error {
		stdout, stderr, code = runCLI(args...)
		return nil
	})
	return stdout, stderr, code
}

// TestCommandsInNamespace drives check-config, ruleset, sync, status and
// teardown through the CLI in a fresh namespace and checks what each prints
// against what the kernel holds.
func TestCommandsInNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "dcmd")
	cfg := cmdConfig(t)
	t.Setenv("SEQKNOCKD_RUNTIME_DIR", t.TempDir())
	onePeriod()

	out, e, code := runIn(t, ns, "-c", cfg, "check-config")
	if want := cfg + ": ok: 1 users, 2 services, period 30s, tolerance 1, 4 slots, table skcmd\n"; code != 0 || !strings.HasPrefix(out, want) {
		t.Errorf("check-config: exit %d %q %q, want %q", code, out, e, want)
	}
	out, _, code = runIn(t, ns, "-c", cfg, "status")
	if code != 3 || !strings.HasPrefix(out, "table inet skcmd: not installed (run `seqknockd sync`)\ndaemon:         no seqknockd is keeping the table in force\n") ||
		!strings.Contains(out, "\nlock:           port 22: no listener yet") {
		t.Errorf("status before sync: exit %d %q, want 3", code, out)
	}
	ruleset, _, code := runIn(t, ns, "-c", cfg, "ruleset")
	if code != 0 || !strings.Contains(ruleset, "# valid: 24 elements at ") || !strings.Contains(ruleset, "table inet skcmd {") {
		t.Errorf("ruleset: exit %d\n%s", code, ruleset)
	}

	_, e, code = runIn(t, ns, "-c", cfg, "sync")
	if code != 0 || !strings.Contains(e, "msg=sync table=skcmd elements=24 created=true rules_rebuilt=true") {
		t.Fatalf("sync: exit %d %q", code, e)
	}
	listing := ns.MustRun("nft", "list", "table", "inet", "skcmd")
	if !strings.Contains(listing, "elements = { 22, 2222 }") {
		t.Errorf("sync installed:\n%s", listing)
	}
	if installed := netnstest.NormalizeListing(listing); !strings.Contains(netnstest.DropComments(ruleset), installed) {
		t.Errorf("ruleset printed before the sync is not what the sync installed:\n%s\nvs\n%s", ruleset, listing)
	}
	_, e, _ = runIn(t, ns, "-c", cfg, "sync")
	if !strings.Contains(e, "created=false rules_rebuilt=false") {
		t.Errorf("second sync: %q", e)
	}

	// No daemon runs here: the table alone counts.
	out, _, code = runIn(t, ns, "-c", cfg, "status", "--no-daemon")
	for _, want := range []string{
		"table:          inet skcmd (current)\n",
		"daemon:         no seqknockd is keeping the table in force\n",
		"ports:          22 (drop), 2222 (reset)\n",
		"guess limit:    10/second (burst 20) per source (/32, /64), global 1000/second (burst 5), locked-out lookups 2000/second (burst 2000)\n",
		"locked out:     0 sources now; 0 SYNs dropped\n",
		"users:          alice\n",
		"valid knocks:   24\n",
		"used knocks:    0\n",
		"admitted:       0 packets\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status: exit %d, lacks %q:\n%s", code, want, out)
		}
	}
	out, _, code = runIn(t, ns, "-c", cfg, "status", "--json", "--no-daemon")
	var st struct {
		Table        string   `json:"table"`
		Present      bool     `json:"present"`
		RulesCurrent bool     `json:"rules_current"`
		Ports        []uint16 `json:"ports"`
		Valid        int      `json:"valid_elements"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || !st.Present || !st.RulesCurrent || st.Valid != 24 || fmt.Sprint(st.Ports) != "[22 2222]" {
		t.Errorf("status --json: exit %d %v %+v\n%s", code, err, st, out)
	}

	// Rules someone else changed differ from the config.
	ns.MustRun("nft", "flush", "chain", "inet", "skcmd", "knock")
	if out, _, code = runIn(t, ns, "-c", cfg, "status"); code != 3 || !strings.Contains(out, "differs:        the rules are not the ones this version writes for the config\n") {
		t.Errorf("status with foreign rules: exit %d, want 3:\n%s", code, out)
	}

	out, _, code = runIn(t, ns, "-c", cfg, "teardown")
	if code != 0 || out != "removed table inet skcmd\n" {
		t.Errorf("teardown: exit %d %q", code, out)
	}
	if l := ns.MustRun("nft", "list", "ruleset"); strings.Contains(l, "skcmd") {
		t.Errorf("table left after teardown:\n%s", l)
	}
	// --table works without a config.
	out, _, code = runIn(t, ns, "-c", "/nonexistent.toml", "teardown", "--table", "skcmd")
	if code != 0 || out != "no table inet skcmd\n" {
		t.Errorf("teardown --table: exit %d %q", code, out)
	}
	_, e, code = runIn(t, ns, "-c", "/nonexistent.toml", "teardown")
	if code != 1 || !strings.Contains(e, "(or name the table with --table)") {
		t.Errorf("teardown without config: exit %d %q", code, e)
	}
}

// TestRunCommand runs `seqknockd run` in a namespace: it syncs at once,
// reloads on SIGHUP, stops on SIGTERM with exit status 0, and leaves the
// table unless --teardown-on-exit.
func TestRunCommand(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, teardown := range []bool{false, true} {
		t.Run(fmt.Sprintf("teardown-on-exit=%v", teardown), func(t *testing.T) {
			ns := netnstest.New(t, "drun")
			cfg := cmdConfig(t)
			args := []string{"seqknockd", "-c", cfg, "run"}
			if teardown {
				args = append(args, "--teardown-on-exit")
			}
			errb := &netnstest.Buffer{}
			done := make(chan int, 1)
			go ns.Do(func() error {
				done <- run(args, &bytes.Buffer{}, errb)
				return nil
			})
			waitLog := func(what string) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for !strings.Contains(errb.String(), what) {
					if time.Now().After(deadline) {
						t.Fatalf("no %q in the log:\n%s", what, errb)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			// The handlers are installed before the first sync; a signal
			// sent after it reaches the daemon, not the test process.
			waitLog("msg=sync")
			syscall.Kill(os.Getpid(), syscall.SIGHUP)
			waitLog("msg=\"config reloaded\"")
			syscall.Kill(os.Getpid(), syscall.SIGTERM)
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("run exited %d:\n%s", code, errb)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("run did not stop on SIGTERM:\n%s", errb)
			}
			l := ns.MustRun("nft", "list", "ruleset")
			if teardown == strings.Contains(l, "table inet skcmd") {
				t.Errorf("teardown-on-exit %v, ruleset after exit:\n%s", teardown, l)
			}
		})
	}
}

// TestRulesetBoundMatchesNft: with bind_source_port on one service,
// `seqknockd ruleset` is what `nft list ruleset` shows after a sync (the
// source-port sets and rules included), and status calls the table
// current and the port's knocks 48-bit.
func TestRulesetBoundMatchesNft(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "dbnd")
	cfg := cmdConfig(t)
	t.Setenv("SEQKNOCKD_RUNTIME_DIR", t.TempDir())
	text, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(text, []byte("port = 2222\n"), []byte("port = 2222\nbind_source_port = true\n"), 1), 0o600)
	// Within one period: the ruleset printed and the one installed hold
	// the same window, and the counts below are the whole window's.
	onePeriod()
	ruleset, _, code := runIn(t, ns, "-c", cfg, "ruleset")
	if code != 0 || !strings.Contains(ruleset, "# valid: 24 elements at ") || !strings.Contains(ruleset, "set valid_sp {") {
		t.Fatalf("ruleset: exit %d\n%s", code, ruleset)
	}
	if _, e, code := runIn(t, ns, "-c", cfg, "sync"); code != 0 {
		t.Fatalf("sync: exit %d %q", code, e)
	}
	listing := ns.MustRun("nft", "list", "ruleset")
	if got, want := netnstest.NormalizeListing(listing), netnstest.DropComments(ruleset); got != want {
		t.Errorf("seqknockd ruleset differs from nft list ruleset:\n%s\nvs\n%s", ruleset, listing)
	}
	valid := ns.MustRun("nft", "list", "set", "inet", "skcmd", "valid_sp")
	if strings.Count(valid, " . 2222 . ") != 12 {
		t.Errorf("valid_sp should hold port 2222's 12 knocks:\n%s", valid)
	}
	out, _, code := runIn(t, ns, "-c", cfg, "status", "--no-daemon")
	for _, want := range []string{"table:          inet skcmd (current)\n", "ports:          22 (drop), 2222 (reset, 48-bit knocks)\n", "valid knocks:   24\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status: exit %d, lacks %q:\n%s", code, want, out)
		}
	}
	out, _, code = runIn(t, ns, "-c", cfg, "check-config")
	if code != 0 || !strings.Contains(out, "port 2222: 12 valid 48-bit knocks") || !strings.Contains(out, "port 22: 12 valid 32-bit knocks") {
		t.Errorf("check-config: exit %d:\n%s", code, out)
	}
}
