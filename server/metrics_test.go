package server

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/nftgen"
)

var sampleLine = regexp.MustCompile(`^[a-z_]+(\{[a-z_]+="[^"\\]*"(,[a-z_]+="[^"\\]*")*\})? -?[0-9.e+-]+$`)

func TestMetricsText(t *testing.T) {
	m := &Metrics{}
	t0 := time.Unix(1_800_000_000, 0)
	var b strings.Builder
	m.Write(&b, t0)
	if !strings.Contains(b.String(), "\nseqknock_last_good_sync_seconds -1\n") {
		t.Errorf("before any sync:\n%s", b.String())
	}
	m.SyncDone(t0, 20*time.Millisecond, nil, 24)
	m.SyncDone(t0.Add(30*time.Second), 5*time.Millisecond, errors.New("no"), 0)
	m.Repaired()
	m.Admitted = func() map[AdmitKey]uint64 {
		return map[AdmitKey]uint64{{"bob", 22}: 1, {"alice", 22}: 2, {`ev"il`, 2222}: 1}
	}
	m.Counters(&nftgen.Live{Admitted: nftgen.Counter{Packets: 3}, UsedCount: 3,
		Unknocked: map[uint16]nftgen.Counter{2222: {Packets: 7}, 22: {Packets: 10_000}},
		Lockout:   nftgen.Counter{Packets: 99_000}, LockedOut: 2})
	b.Reset()
	if err := m.Write(&b, t0.Add(31*time.Second)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`seqknock_admitted_knocks_total{user="alice",port="22"} 2`,
		`seqknock_admitted_knocks_total{user="bob",port="22"} 1`,
		`seqknock_admitted_knocks_total{user="ev\"il",port="2222"} 1`,
		"seqknock_admitted_syns_total 3",
		`seqknock_unknocked_packets_total{port="22"} 10000`,
		`seqknock_unknocked_packets_total{port="2222"} 7`,
		"seqknock_lockout_drops_total 99000",
		"seqknock_locked_out_sources 2",
		"seqknock_valid_elements 24",
		"seqknock_used_elements 3",
		"seqknock_syncs_total 2",
		"seqknock_sync_failures_total 1",
		"seqknock_sync_duration_seconds 0.005",
		"seqknock_table_repairs_total 1",
		"seqknock_last_good_sync_seconds 31",
		"seqknock_last_good_sync_timestamp_seconds 1.8e+09",
		"# TYPE seqknock_unknocked_packets_total counter",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no line %q in\n%s", want, out)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "# HELP ") && !strings.HasPrefix(l, "# TYPE ") && !sampleLine.MatchString(strings.ReplaceAll(l, `\"`, "")) {
			t.Errorf("not a sample line: %q", l)
		}
	}

	dir := t.TempDir()
	p := filepath.Join(dir, "seqknock.prom")
	if err := m.WriteTextfile(p, t0); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	entries, _ := os.ReadDir(dir)
	if err != nil || fi.Mode().Perm() != 0o644 || len(entries) != 1 {
		t.Errorf("textfile: %v %v, %d files", err, fi, len(entries))
	}
}
