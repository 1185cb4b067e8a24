package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"time"

	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

// Spent is the set of knocks known to be spent, each with the time its used
// entry ends. seqknockd learns them from the kernel (each admission as it
// happens, see package admitlog, and the used set at each sync), keeps them
// in a state file, and puts them back whenever it rebuilds the table, so a
// knock stays spent across a table removal, a teardown and a restart.
type Spent struct {
	m map[uint64]time.Time
	// Before, when set, makes every knock of a counter that begins before
	// it spent, listed or not: what the daemon knows when it cannot trust
	// its state (see VetState), or when the list outgrew the used set
	// (see Bound). A sync leaves those counters out of valid.
	Before time.Time
}

// FirstCounter is the first counter of period whose knocks Before leaves
// valid: the first one that begins at or after Before (0 when Before is
// not set).
func (s *Spent) FirstCounter(period time.Duration) uint64 {
	if s.Before.IsZero() || !s.Before.After(time.Unix(0, 0)) {
		return 0
	}
	return totp.Counter(s.Before.Add(-time.Nanosecond), period) + 1
}

// Bound keeps the list within max knocks: over it, it forgets the list and
// makes every knock of a counter that begins before floor spent instead
// (floor: FailClosedFloor at now covers every knock ever valid until now).
func (s *Spent) Bound(max int, floor time.Time) {
	if len(s.m) > max {
		s.m = nil
		if floor.After(s.Before) {
			s.Before = floor
		}
	}
}

// spentKey is a knock's identity: its source port (0 for a knock not bound
// to one), port and ISN in one word.
func spentKey(sport, port uint16, isn uint32) uint64 {
	return uint64(sport)<<48 | uint64(port)<<32 | uint64(isn)
}

// AddBound records that the knock (port, isn), bound to source port sport
// (0: not bound), is spent until until; a later until wins. It reports
// whether anything changed.
func (s *Spent) AddBound(sport, port uint16, isn uint32, until time.Time) bool {
	if s.m == nil {
		s.m = map[uint64]time.Time{}
	}
	k := spentKey(sport, port, isn)
	if old, ok := s.m[k]; ok && !until.After(old) {
		return false
	}
	s.m[k] = until
	return true
}

// Merge adds every element (Expires: when it stops being spent).
func (s *Spent) Merge(els []nftgen.Element) {
	for _, e := range els {
		s.AddBound(e.SPort, e.Port, e.ISN, e.Expires)
	}
}

// Prune forgets knocks whose used entry has ended by now.
func (s *Spent) Prune(now time.Time) {
	for k, t := range s.m {
		if !t.After(now) {
			delete(s.m, k)
		}
	}
}

// Len is the number of knocks held.
func (s *Spent) Len() int { return len(s.m) }

// List returns the spent knocks, ordered by source port, port and ISN.
func (s *Spent) List() []nftgen.Element {
	out := make([]nftgen.Element, 0, len(s.m))
	for k, t := range s.m {
		out = append(out, nftgen.Element{SPort: uint16(k >> 48), Port: uint16(k >> 32), ISN: uint32(k), Expires: t})
	}
	sort.Slice(out, func(i, j int) bool {
		return spentKey(out[i].SPort, out[i].Port, out[i].ISN) < spentKey(out[j].SPort, out[j].Port, out[j].ISN)
	})
	return out
}

// DefaultStateDir is the directory of the default state files.
const DefaultStateDir = "/var/lib/seqknock"

// NoState, as a state path, keeps no state file.
const NoState = "none"

// StateFileName is the default state file's name for table in the
// network namespace netns ("" for the host's, PID 1's): TABLE.json, or
// TABLE@NETNS.json, so daemons of one host in different namespaces, or
// for different tables, never share a file.
func StateFileName(table, netns string) string {
	if netns == "" {
		return table + ".json"
	}
	return table + "@" + netns + ".json"
}

// State is what seqknockd keeps between runs.
type State struct {
	// Table is the table the state belongs to.
	Table string
	// High is the highest time the daemon has synced for: its clock
	// never goes back behind it (see Daemon).
	High time.Time
	Spent
}

type stateJSON struct {
	Version  int         `json:"version"`
	Table    string      `json:"table"`
	HighMS   int64       `json:"high_unix_ms"`
	BeforeMS int64       `json:"spent_before_unix_ms,omitempty"`
	Spent    []spentJSON `json:"spent"`
}

type spentJSON struct {
	SPort   uint16 `json:"sport,omitempty"` // a 48-bit knock's source port
	Port    uint16 `json:"port"`
	ISN     uint32 `json:"isn"`
	UntilMS int64  `json:"until_unix_ms"`
}

// MaxStateSize is the largest state file LoadState reads: far more than
// the most knocks a used set can hold (about 60 bytes each).
const MaxStateSize = 256 << 20

// LoadState reads the state file at path for table. With path "" or
// NoState it returns an empty state and no error. A missing file is an
// error wrapping fs.ErrNotExist; a file that cannot be read, does not
// parse, is of another version or for another table is an error naming
// it. VetState says what the daemon may use in each case.
func LoadState(path, table string) (*State, error) {
	st := &State{Table: table}
	if path == "" || path == NoState {
		return st, nil
	}
	dir, err := openStateDir(filepath.Dir(path), false)
	if err != nil {
		return st, fmt.Errorf("state %s: %w", path, err)
	}
	defer dir.Close()
	f, err := openFileAt(dir, filepath.Base(path))
	if err != nil {
		return st, fmt.Errorf("state %s: %w", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() > MaxStateSize {
		if err == nil {
			err = fmt.Errorf("not a regular file of at most %d bytes", MaxStateSize)
		}
		return st, fmt.Errorf("state %s: %w", path, err)
	}
	var j stateJSON
	if err := json.NewDecoder(f).Decode(&j); err != nil {
		return st, fmt.Errorf("state %s: %w", path, err)
	}
	if j.Version != 1 {
		return st, fmt.Errorf("state %s: version %d, want 1", path, j.Version)
	}
	if j.Table != table {
		return st, fmt.Errorf("state %s: for table %q, not %q", path, j.Table, table)
	}
	if j.HighMS > 0 {
		st.High = time.UnixMilli(j.HighMS)
	}
	if j.BeforeMS > 0 {
		st.Before = time.UnixMilli(j.BeforeMS)
	}
	for _, e := range j.Spent {
		st.AddBound(e.SPort, e.Port, e.ISN, time.UnixMilli(e.UntilMS))
	}
	return st, nil
}

// FailClosedFloor is the Before that makes every knock valid at now, or at
// any time before it, spent: the start of the counter after the window's
// last. A client whose clock is right waits for that counter, at most
// tolerance + lookahead + 1 periods (under one window).
func FailClosedFloor(cfg *Config, now time.Time) time.Time {
	return time.Unix(0, 0).Add(time.Duration(WindowEnd(cfg, now)+1) * cfg.Period)
}

// MaxSpent is the most spent knocks a state may list for cfg at now: the
// used set's capacity, so a sync that puts them all back never overflows
// it.
func MaxSpent(cfg *Config, now time.Time) int {
	return max(nftgen.DefaultUsedSize, knockCount(cfg, now))
}

// VetState returns the state the daemon may use at now, from what
// LoadState returned (st, err), and why the state was not trusted ("": it
// was). It is pure: window is the config's window length, max its
// MaxSpent and floor its FailClosedFloor at now.
//
// A state that is missing, unreadable, for another table or lists more
// than max knocks is not used: the knocks of every counter that begins
// before floor count as spent instead (Before), which covers every knock
// that may have been admitted before now. A High or Before more than a
// window ahead of now is dropped the same way (the file is wrong, or the
// clock was set far back); the spent knocks listed are kept, since a spent
// knock only ever keeps a knock out.
func VetState(st *State, err error, now time.Time, window time.Duration, max int, floor time.Time) (*State, string) {
	fresh := func() *State { return &State{Table: st.Table, Spent: Spent{Before: floor}} }
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fresh(), "no state file"
	case err != nil:
		return fresh(), err.Error()
	case st.Len() > max:
		return fresh(), fmt.Sprintf("%d spent knocks, more than the %d the used set holds", st.Len(), max)
	}
	limit := now.Add(window)
	var why string
	if st.High.After(limit) {
		why = fmt.Sprintf("high_unix_ms %d is more than a window (%v) ahead of the clock", st.High.UnixMilli(), window)
		st.High = time.Time{}
	}
	if st.Before.After(limit) {
		if why == "" {
			why = fmt.Sprintf("spent_before_unix_ms %d is more than a window (%v) ahead of the clock", st.Before.UnixMilli(), window)
		}
		st.Before = time.Time{}
	}
	if why != "" && floor.After(st.Before) {
		st.Before = floor
	}
	return st, why
}

// LoadVetted is LoadState, then VetState for cfg at now: the state a sync
// may use, with one warning when the file was not trusted. NoState gives
// an empty state.
func LoadVetted(path string, cfg *Config, now time.Time, log *slog.Logger) *State {
	st, err := LoadState(path, cfg.Table)
	if path == NoState {
		return st
	}
	st, why := VetState(st, err, now, cfg.WindowLength(), MaxSpent(cfg, now), FailClosedFloor(cfg, now))
	if why != "" {
		log.Warn("state not trusted; every knock of a counter that began before spent_before counts as spent (clients wait at most a window)",
			"state", path, "why", why, "spent_before", st.Before.UTC().Format(time.RFC3339))
	}
	return st
}

// CheckStateDir makes sure the directory of the state file path exists
// (created 0700) and passes openStateDir's checks: anyone else who could
// write there, or rename it or a directory above it, could replace the
// state and revive spent knocks.
func CheckStateDir(path string) error {
	if path == "" || path == NoState {
		return nil
	}
	dir, err := openStateDir(filepath.Dir(path), true)
	if err != nil {
		return err
	}
	return dir.Close()
}

// Save writes the state to path atomically: a new file beside it, written,
// synced and closed, renamed over the old one, then the directory synced,
// every step relative to the directory CheckStateDir checks. Any error
// leaves the old file as it was. The file is mode 0600.
func (st *State) Save(path string) error {
	if path == "" || path == NoState {
		return nil
	}
	j := stateJSON{Version: 1, Table: st.Table, Spent: []spentJSON{}}
	if !st.High.IsZero() {
		j.HighMS = st.High.UnixMilli()
	}
	if !st.Before.IsZero() {
		j.BeforeMS = st.Before.UnixMilli()
	}
	for _, e := range st.List() {
		j.Spent = append(j.Spent, spentJSON{SPort: e.SPort, Port: e.Port, ISN: e.ISN, UntilMS: e.Expires.UnixMilli()})
	}
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	dir, err := openStateDir(filepath.Dir(path), true)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := writeAtomic(dir, filepath.Base(path), append(b, '\n')); err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	return nil
}
