//go:build linux

package server

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
	"golang.org/x/sys/unix"
)

// spendKnocks sends 1,000 knocks of alice and bob (slots 0..249 of the
// counters now and next) as raw SYNs, waits until all are admitted and
// returns them.
func spendKnocks(t *testing.T, b *testbed, s *synSender, period time.Duration) []uint32 {
	t.Helper()
	c := totp.Counter(time.Now(), period)
	var knocks []uint32
	for _, key := range [][]byte{aliceKey, bobKey} {
		d, _ := totp.NewDeriver(key, "lab")
		for _, counter := range []uint64{c, c + 1} {
			for slot := 0; slot < 250; slot++ {
				knocks = append(knocks, d.ISN(22, counter, uint8(slot)))
			}
		}
	}
	before := synAcks(t, b)
	for _, k := range knocks {
		s.send(t, k)
	}
	waitFor(t, "1000 admissions", func() bool { return synAcks(t, b)-before >= len(knocks) })
	return knocks
}

// writeState writes a state file as another program (or a crash) would
// leave it.
func writeState(t *testing.T, path string, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLostStateStaysSpent spends 1,000 knocks, then, for each way the state
// is lost while the table is lost too (daemon stopped, table deleted),
// restarts the daemon and replays them all: a corrupted file, a removed
// file, and a file whose high_unix_ms is a year ahead (and lists none of
// them). None is admitted. The daemon then waits at most a window: a
// daemon two periods later admits a fresh knock of the first counter after
// the window the state was lost in.
func TestLostStateStaysSpent(t *testing.T) {
	f := newInForce(t, 84, spentConfig)
	state := filepath.Join(f.dir, "state", "state.json")
	f.stop()
	if err := (&State{Table: f.cfg.Table}).Save(state); err != nil {
		t.Fatal(err)
	}
	f.start(t, daemonOpts{statePath: state})
	watchSynAcks(f.testbed)
	s := newSynSender(t, f.testbed)
	start := time.Now()
	knocks := spendKnocks(t, f.testbed, s, f.cfg.Period)
	yearAhead := fmt.Sprintf(`{"version":1,"table":"seqknock","high_unix_ms":%d,"spent":[]}`, time.Now().AddDate(1, 0, 0).UnixMilli())
	for _, ev := range []struct {
		name string
		lose func()
	}{
		{"corrupted state", func() { writeState(t, state, `{"garbage":`) }},
		{"removed state", func() { os.Remove(state) }},
		{"high_unix_ms a year ahead", func() { writeState(t, state, yearAhead) }},
	} {
		f.stop()
		ev.lose()
		f.srv.MustRun("nft", "delete", "table", "inet", "seqknock")
		f.start(t, daemonOpts{statePath: state})
		n := replayAll(t, f.testbed, s, knocks)
		t.Logf("after a %s with the table lost: %d of %d replays admitted", ev.name, n, len(knocks))
		if n != 0 {
			t.Errorf("after a %s with the table lost: %d of %d replays admitted\n%s", ev.name, n, len(knocks), f.log.String())
		}
		if !strings.Contains(f.log.String(), "state not trusted") {
			t.Errorf("after a %s: no warning logged:\n%s", ev.name, f.log.String())
		}
	}
	// Two periods on (the config's window is three), the first counter
	// after the lost state's window is in force, and not a year ahead.
	f.stop()
	later := 2 * f.cfg.Period
	f.start(t, daemonOpts{statePath: state, now: func() time.Time { return time.Now().Add(later) }})
	d, _ := totp.NewDeriver(aliceKey, "lab")
	// The daemon's own counter now: at least two past the last lost
	// state's, so at or past its floor, whether or not a period boundary
	// passed while the test ran.
	fresh := d.ISN(22, totp.Counter(time.Now().Add(later), f.cfg.Period), 255)
	if !freshKnock(t, f.testbed, s, fresh) {
		t.Errorf("two periods after the state was lost, a fresh knock was not admitted:\n%s", f.log.String())
	}
	if n := replayAll(t, f.testbed, s, knocks); n != 0 {
		t.Errorf("two periods on: %d of %d replays admitted", n, len(knocks))
	}
	if time.Since(start) > f.cfg.Period {
		t.Fatalf("the test took %v, longer than a period: its knocks may have expired", time.Since(start))
	}
}

// TestOversizedStateInstalls: a state file listing 70,000 spent knocks,
// more than the used set's 65,535, made every sync fail, so no table was
// installed. The daemon now installs its table at once (every knock of the
// window so far counted as spent instead).
func TestOversizedStateInstalls(t *testing.T) {
	f := newInForce(t, 86, spentConfig)
	f.stop()
	f.srv.MustRun("nft", "delete", "table", "inet", "seqknock")
	state := filepath.Join(f.dir, "state", "state.json")
	if err := CheckStateDir(state); err != nil {
		t.Fatal(err)
	}
	type entry struct {
		Port    uint16 `json:"port"`
		ISN     uint32 `json:"isn"`
		UntilMS int64  `json:"until_unix_ms"`
	}
	j := struct {
		Version int     `json:"version"`
		Table   string  `json:"table"`
		HighMS  int64   `json:"high_unix_ms"`
		Spent   []entry `json:"spent"`
	}{Version: 1, Table: "seqknock", HighMS: time.Now().UnixMilli()}
	until := time.Now().Add(time.Minute).UnixMilli()
	for i := 0; i < 70_000; i++ {
		j.Spent = append(j.Spent, entry{Port: 22, ISN: uint32(i + 1), UntilMS: until})
	}
	b, _ := json.Marshal(j)
	writeState(t, state, string(b))
	f.start(t, daemonOpts{statePath: state})
	if _, err := f.srv.Run("nft", "list", "table", "inet", "seqknock"); err != nil {
		t.Errorf("no table installed: %v\n%s", err, f.log.String())
	}
	if strings.Contains(f.log.String(), "sync failed") || !strings.Contains(f.log.String(), "70000 spent knocks, more than the 65535") {
		t.Errorf("log:\n%s", f.log.String())
	}
}

// TestStatePerNetNS: two seqknockd in two network namespaces of one host,
// for the same table, with the same state directory, keep two files. One
// spends 1,000 knocks, the other saves its own state meanwhile; then the
// first is killed, its ruleset flushed, and it is started again: none of
// the 1,000 is admitted. With one file for both, the second's save threw
// the first's spent knocks away.
func TestStatePerNetNS(t *testing.T) {
	b := newTestbed(t, 88)
	other := netnstest.New(t, "ssrv2")
	bin := netnstest.Build(t, "server/cmd/seqknockd")
	cfg := filepath.Join(b.dir, "seqknockd.toml")
	if err := os.WriteFile(cfg, []byte(spentConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	var name string
	if err := b.srv.Do(func() (err error) { name, err = NetNSName(); return }); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, StateFileName("seqknock", name))
	if err := (&State{Table: "seqknock"}).Save(mine); err != nil {
		t.Fatal(err)
	}
	type proc struct {
		stop   func(sig unix.Signal)
		signal func(sig unix.Signal)
		log    *netnstest.Buffer
	}
	run := func(ns *netnstest.NS) *proc {
		p := &proc{log: &netnstest.Buffer{}}
		cmd := ns.Command(bin, "--config", cfg, "run", "--state-dir", dir)
		cmd.Stderr = p.log
		for _, e := range os.Environ() { // the package's tests keep no state: this one does
			if !strings.HasPrefix(e, "SEQKNOCKD_STATE=") {
				cmd.Env = append(cmd.Env, e)
			}
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p.signal = func(sig unix.Signal) { cmd.Process.Signal(sig) }
		stopped := false
		p.stop = func(sig unix.Signal) {
			if !stopped {
				stopped = true
				cmd.Process.Signal(sig)
				cmd.Wait()
			}
		}
		t.Cleanup(func() { p.stop(unix.SIGTERM) })
		waitFor(t, "first sync", func() bool { return strings.Contains(p.log.String(), "msg=sync") })
		return p
	}
	first := run(b.srv)
	second := run(other)
	watchSynAcks(b)
	s := newSynSender(t, b)
	start := time.Now()
	knocks := spendKnocks(t, b, s, 60*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := LoadState(mine, "seqknock")
		if err == nil && st.Len() >= len(knocks) {
			break
		}
		if time.Now().After(deadline) {
			files, _ := filepath.Glob(filepath.Join(dir, "*"))
			t.Fatalf("the spent knocks were not saved in %s (%v, %v); files %v\n%s", mine, st.Len(), err, files, first.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The second daemon saves its state now (a reload syncs and saves).
	saves := strings.Count(second.log.String(), "msg=sync")
	second.signal(unix.SIGHUP)
	waitFor(t, "the second daemon's save", func() bool { return strings.Count(second.log.String(), "msg=sync") > saves })
	first.stop(unix.SIGKILL)
	b.srv.MustRun("nft", "flush", "ruleset")
	watchSynAcks(b)
	first = run(b.srv)
	n := replayAll(t, b, s, knocks)
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	t.Logf("state files %v; after the restart: %d of %d replays admitted", files, n, len(knocks))
	if n != 0 {
		t.Errorf("%d of %d replays admitted\nfirst:\n%s\nsecond:\n%s", n, len(knocks), first.log.String(), second.log.String())
	}
	if len(files) != 2 {
		t.Errorf("state files %v, want one per namespace", files)
	}
	if time.Since(start) > time.Minute {
		t.Fatalf("the test took %v, longer than a period: its knocks may have expired", time.Since(start))
	}
}
