package server

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seqknock/seqknock/nftgen"
)

// Metrics are the daemon's counters and gauges, in the Prometheus text
// exposition format (version 0.0.4), which both the node_exporter textfile
// collector and a Prometheus scrape read. The format is a few lines of
// text, so no client library is needed for it.
type Metrics struct {
	// Admitted, when set, returns the audit's admissions per user and
	// port.
	Admitted func() map[AdmitKey]uint64
	// NearMisses, when set, returns the near misses per user and cause.
	NearMisses func() map[NearMissKey]uint64

	mu           sync.Mutex
	syncs        uint64
	syncFailures uint64
	repairs      uint64
	lastDuration time.Duration
	lastGood     time.Time
	valid        int
	used         int
	admittedRule uint64 // SYNs admitted, from the admit rule's counter
	unknocked    map[uint16]uint64
	lockout      uint64 // SYNs of locked-out sources dropped
	lockedOut    int    // sources locked out now
	// listeners locked and not locked, per protected port (nil: the
	// listeners were never checked).
	listenersLocked, listenersUnlocked map[uint16]int
}

// Listeners records, per protected port, how many of its listeners are
// locked and how many are not.
func (m *Metrics) Listeners(locked, unlocked map[uint16]int) {
	m.mu.Lock()
	m.listenersLocked, m.listenersUnlocked = locked, unlocked
	m.mu.Unlock()
}

// portSamples are a per-port count as samples, by port, with 0 for a
// port only other has. Called with m.mu held.
func portSamples[V int | uint64](counts, other map[uint16]V) []sample {
	ports := slices.AppendSeq(slices.Collect(maps.Keys(counts)), maps.Keys(other))
	slices.Sort(ports)
	ports = slices.Compact(ports)
	out := make([]sample, len(ports))
	for i, p := range ports {
		out[i] = sample{fmt.Sprintf(`{port="%d"}`, p), float64(counts[p])}
	}
	return out
}

// SyncDone records a sync: its duration, whether it failed, and on success
// the number of valid elements it wrote.
func (m *Metrics) SyncDone(now time.Time, took time.Duration, err error, elements int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.syncs++
	m.lastDuration = took
	if err != nil {
		m.syncFailures++
		return
	}
	m.lastGood = now
	m.valid = elements
}

// Repaired records a table repair (the table or its parts restored after
// someone else changed them).
func (m *Metrics) Repaired() {
	m.mu.Lock()
	m.repairs++
	m.mu.Unlock()
}

// Counters records the table's counters and the used set's size, as last
// read.
func (m *Metrics) Counters(live *nftgen.Live) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.admittedRule, m.used = live.Admitted.Packets, live.UsedCount
	m.lockout, m.lockedOut = live.Lockout.Packets, live.LockedOut
	m.unknocked = make(map[uint16]uint64, len(live.Unknocked))
	for p, c := range live.Unknocked {
		m.unknocked[p] = c.Packets
	}
}

// metric is one family: name, type, help and its samples.
type metric struct {
	name, typ, help string
	samples         []sample
}

type sample struct {
	labels string // `{user="alice",port="22"}` or ""
	value  float64
}

// Write writes every metric at now in the text format.
func (m *Metrics) Write(w io.Writer, now time.Time) error {
	m.mu.Lock()
	var since float64 = -1
	if !m.lastGood.IsZero() {
		since = now.Sub(m.lastGood).Seconds()
	}
	families := []metric{
		{"seqknock_admitted_knocks_total", "counter", "Connections admitted by a knock, per user and port (audit log).", nil},
		{"seqknock_admitted_syns_total", "counter", "SYNs admitted by the knock rule (its nftables counter; resets when the rules are rewritten).",
			[]sample{{"", float64(m.admittedRule)}}},
		{"seqknock_unknocked_packets_total", "counter", "Packets to a protected port that neither carried a valid knock nor belonged to an admitted connection, dropped or answered with a reset, per port (counters of the unknocked set; they reset only when the table is recreated).",
			portSamples(m.unknocked, nil)},
		{"seqknock_lockout_drops_total", "counter", "Unknocked SYNs of sources over the guess limit, dropped (or reset in reset mode) by the lockout (rule counters; reset when the rules are rewritten).",
			[]sample{{"", float64(m.lockout)}}},
		{"seqknock_locked_out_sources", "gauge", "Sources (addresses or prefixes) locked out by the guess limit or the global cap now.",
			[]sample{{"", float64(m.lockedOut)}}},
		{"seqknock_listeners_locked", "gauge", "Listening sockets of a protected port with the socket filter that drops a SYN the table did not mark, per port.",
			portSamples(m.listenersLocked, m.listenersUnlocked)},
		{"seqknock_listeners_unlocked", "gauge", "Listening sockets of a protected port seqknockd could not lock (only the table protects them), per port.",
			portSamples(m.listenersUnlocked, m.listenersLocked)},
		{"seqknock_valid_elements", "gauge", "Knocks valid now (elements of the valid set written by the last good sync).",
			[]sample{{"", float64(m.valid)}}},
		{"seqknock_used_elements", "gauge", "Knocks spent and remembered (elements of the used set).",
			[]sample{{"", float64(m.used)}}},
		{"seqknock_syncs_total", "counter", "Syncs run.", []sample{{"", float64(m.syncs)}}},
		{"seqknock_sync_failures_total", "counter", "Syncs that failed (nothing changed).", []sample{{"", float64(m.syncFailures)}}},
		{"seqknock_sync_duration_seconds", "gauge", "Duration of the last sync.", []sample{{"", m.lastDuration.Seconds()}}},
		{"seqknock_table_repairs_total", "counter", "Times the table was restored after someone else changed or removed it.",
			[]sample{{"", float64(m.repairs)}}},
		{"seqknock_last_good_sync_seconds", "gauge", "Seconds since the last good sync at the time of writing (-1: none yet).",
			[]sample{{"", since}}},
		{"seqknock_last_good_sync_timestamp_seconds", "gauge", "Unix time of the last good sync (0: none yet).",
			[]sample{{"", unixOrZero(m.lastGood)}}},
	}
	m.mu.Unlock()
	if m.Admitted != nil {
		admitted := m.Admitted()
		for _, k := range slices.SortedFunc(maps.Keys(admitted), func(x, y AdmitKey) int {
			return cmp.Or(cmp.Compare(x.User, y.User), cmp.Compare(x.Port, y.Port))
		}) {
			families[0].samples = append(families[0].samples,
				sample{fmt.Sprintf(`{user=%s,port="%d"}`, labelValue(k.User), k.Port), float64(admitted[k])})
		}
	}
	families = append(families, nearMissFamily(m.NearMisses))
	bw := bufio.NewWriter(w)
	for _, f := range families {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ)
		for _, s := range f.samples {
			fmt.Fprintf(bw, "%s%s %s\n", f.name, s.labels, strconv.FormatFloat(s.value, 'g', -1, 64))
		}
	}
	return bw.Flush()
}

func unixOrZero(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// labelValue quotes a label value as the text format wants.
func labelValue(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// WriteTextfile writes the metrics to path for node_exporter's textfile
// collector: into a temporary file in the same directory, then renamed, so
// the collector never reads half a file.
func (m *Metrics) WriteTextfile(path string, now time.Time) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = m.Write(tmp, now)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Handler serves the metrics, for a Prometheus scrape.
func (m *Metrics) Handler(now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m.Write(w, now())
	})
}
