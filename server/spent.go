package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/seqknock/seqknock/nftgen"
)

// Spent is the set of knocks known to be spent, each with the time its used
// entry ends. seqknockd learns them from the kernel (each admission as it
// happens, see package admitlog, and the used set at each sync), keeps them
// in a state file, and puts them back whenever it rebuilds the table, so a
// knock stays spent across a table removal, a teardown and a restart.
type Spent struct {
	m map[uint64]time.Time
}

// spentKey is a knock's identity: its source port (0 for a knock not bound
// to one), port and ISN in one word.
func spentKey(sport, port uint16, isn uint32) uint64 {
	return uint64(sport)<<48 | uint64(port)<<32 | uint64(isn)
}

// Add records that the knock (port, isn) is spent until until; a later
// until wins. It reports whether anything changed.
func (s *Spent) Add(port uint16, isn uint32, until time.Time) bool {
	return s.AddBound(0, port, isn, until)
}

// AddBound is Add for a knock bound to source port sport (0: not bound).
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
func (s *Spent) Merge(els []nftgen.Element) bool {
	changed := false
	for _, e := range els {
		if s.AddBound(e.SPort, e.Port, e.ISN, e.Expires) {
			changed = true
		}
	}
	return changed
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

// DefaultStatePath is where seqknockd keeps its state (spent knocks and its
// highest clock reading) between runs.
const DefaultStatePath = "/var/lib/seqknock/state.json"

// NoState, as a state path, keeps no state file.
const NoState = "none"

// State is what seqknockd keeps between runs.
type State struct {
	// Table is the table the state belongs to; a state for another
	// table is not used.
	Table string
	// High is the highest time the daemon has synced for: its clock
	// never goes back behind it (see Daemon).
	High time.Time
	Spent
}

type stateJSON struct {
	Version int         `json:"version"`
	Table   string      `json:"table"`
	HighMS  int64       `json:"high_unix_ms"`
	Spent   []spentJSON `json:"spent"`
}

type spentJSON struct {
	SPort   uint16 `json:"sport,omitempty"` // a 48-bit knock's source port
	Port    uint16 `json:"port"`
	ISN     uint32 `json:"isn"`
	UntilMS int64  `json:"until_unix_ms"`
}

// LoadState reads the state file at path for table. A missing file, or one
// for another table, is an empty state; a file that does not parse is an
// error naming it.
func LoadState(path, table string) (*State, error) {
	st := &State{Table: table}
	if path == "" || path == NoState {
		return st, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("state %s: %w", path, err)
	}
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return st, fmt.Errorf("state %s: %w", path, err)
	}
	if j.Version != 1 {
		return st, fmt.Errorf("state %s: version %d, want 1", path, j.Version)
	}
	if j.Table != table {
		return st, nil
	}
	if j.HighMS > 0 {
		st.High = time.UnixMilli(j.HighMS)
	}
	for _, e := range j.Spent {
		st.AddBound(e.SPort, e.Port, e.ISN, time.UnixMilli(e.UntilMS))
	}
	return st, nil
}

// Save writes the state to path atomically (a new file, synced, renamed
// over the old one), mode 0600, creating its directory (0700) if needed.
func (st *State) Save(path string) error {
	if path == "" || path == NoState {
		return nil
	}
	j := stateJSON{Version: 1, Table: st.Table, Spent: []spentJSON{}}
	if !st.High.IsZero() {
		j.HighMS = st.High.UnixMilli()
	}
	for _, e := range st.List() {
		j.Spent = append(j.Spent, spentJSON{SPort: e.SPort, Port: e.Port, ISN: e.ISN, UntilMS: e.Expires.UnixMilli()})
	}
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
