package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// MaxRecentAdmissions is how many admissions the daemon info keeps.
const MaxRecentAdmissions = 200

// DaemonInfo is what `seqknockd run` tells the other commands about
// itself, in a file beside its lock (InfoPath): its pid, when it started,
// its last sync, and the recent admissions. `status`, `users` and
// `admissions` read it; whether the daemon lives is told by its lock
// (ProbeDaemon), never by this file, which a killed daemon leaves behind.
type DaemonInfo struct {
	Pid     int       `json:"pid"`
	Table   string    `json:"table"`
	Started time.Time `json:"started"`
	// LastSync is the last good sync; LastError the error of the last
	// sync when it failed ("" when it did not).
	LastSync  time.Time `json:"last_sync"`
	LastError string    `json:"last_error,omitempty"`
	// Admissions are the most recent admissions, oldest first, at most
	// MaxRecentAdmissions; LastKnocks each user's last one, kept also when
	// it leaves Admissions.
	Admissions []AdmissionRecord          `json:"admissions"`
	LastKnocks map[string]AdmissionRecord `json:"last_knocks"`
}

// AdmissionRecord is one admitted SYN: when, whose knock (User "" when the
// daemon could not tell: --audit=false, or a knock of a replaced config),
// from where to where.
type AdmissionRecord struct {
	Time time.Time      `json:"time"`
	User string         `json:"user"`
	Src  netip.AddrPort `json:"src"`
	Dst  netip.AddrPort `json:"dst"`
}

// Synced records a sync at now that ended with err.
func (i *DaemonInfo) Synced(now time.Time, err error) {
	if err != nil {
		i.LastError = err.Error()
		return
	}
	i.LastSync, i.LastError = now, ""
}

// Admitted records an admission.
func (i *DaemonInfo) Admitted(a AdmissionRecord) {
	i.Admissions = append(i.Admissions, a)
	if n := len(i.Admissions) - MaxRecentAdmissions; n > 0 {
		i.Admissions = slices.Delete(i.Admissions, 0, n)
	}
	if a.User != "" {
		if i.LastKnocks == nil {
			i.LastKnocks = map[string]AdmissionRecord{}
		}
		i.LastKnocks[a.User] = a
	}
}

// InfoPath is the daemon info file of table in the calling thread's
// network namespace, beside the daemon's lock in dir.
func InfoPath(dir, table string) (string, error) {
	return daemonFile(dir, table, "json")
}

// WriteInfo writes info to path atomically (a temporary file renamed over
// it), readable by root alone. Both are written relative to path's
// directory, walked and checked as the lock's (openRuntimeDir).
func WriteInfo(path string, info *DaemonInfo) error {
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("daemon info: %w", err)
	}
	d, err := openRuntimeDir(filepath.Dir(path), false, "daemon info")
	if err != nil {
		return err
	}
	defer d.Close()
	if err := writeAtomic(d, filepath.Base(path), b); err != nil {
		return fmt.Errorf("daemon info: %w", err)
	}
	return nil
}

// ReadInfo reads the daemon info at path, relative to its directory walked
// and checked as the lock's (openRuntimeDir); a missing file is no info,
// not an error.
func ReadInfo(path string) (*DaemonInfo, error) {
	d, err := openRuntimeDir(filepath.Dir(path), false, "daemon info")
	if errors.Is(err, fs.ErrNotExist) {
		return &DaemonInfo{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return readInfoAt(d, filepath.Base(path))
}

// readInfoAt reads the daemon info file name in the runtime directory d.
func readInfoAt(d *os.File, name string) (*DaemonInfo, error) {
	f, err := openFileAt(d, name)
	if errors.Is(err, fs.ErrNotExist) {
		return &DaemonInfo{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("daemon info: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	var info DaemonInfo
	var b []byte
	if err == nil {
		b, err = io.ReadAll(f)
	}
	if err == nil {
		err = json.Unmarshal(b, &info)
	}
	if err != nil {
		return nil, fmt.Errorf("daemon info: %s: %w", f.Name(), err)
	}
	return &info, nil
}

// DaemonState is what status tells of the daemon that keeps the table in
// force.
type DaemonState struct {
	Running bool `json:"running"`
	Pid     int  `json:"pid,omitempty"`
	// Started and LastSync are from the daemon's info file; zero when it
	// has not written one yet.
	Started   time.Time `json:"started,omitzero"`
	UptimeS   float64   `json:"uptime_s,omitempty"`
	LastSync  time.Time `json:"last_sync,omitzero"`
	LastSyncS float64   `json:"last_sync_ago_s,omitempty"`
	LastError string    `json:"last_error,omitempty"`
}

// NoDaemon is what status and teardown say when no daemon holds the lock.
const NoDaemon = "no seqknockd is keeping the table in force"

// daemonState is the state of a daemon whose lock is held (running) by
// pid, with its info, at now.
func daemonState(running bool, pid int, info *DaemonInfo, now time.Time) DaemonState {
	if !running {
		return DaemonState{}
	}
	st := DaemonState{Running: true, Pid: pid}
	if info != nil && info.Pid == pid && pid != 0 {
		st.Started, st.LastSync, st.LastError = info.Started, info.LastSync, info.LastError
		if !info.Started.IsZero() {
			st.UptimeS = now.Sub(info.Started).Seconds()
		}
		if !info.LastSync.IsZero() {
			st.LastSyncS = now.Sub(info.LastSync).Seconds()
		}
	}
	return st
}

// Text is the daemon's line in status.
func (d DaemonState) Text() string {
	if !d.Running {
		return NoDaemon
	}
	if d.Pid == 0 {
		// It holds the lock but has not written its pid yet: it is
		// starting.
		return "seqknockd run, starting (pid not written yet)"
	}
	s := fmt.Sprintf("seqknockd run, pid %d", d.Pid)
	if !d.Started.IsZero() {
		s += fmt.Sprintf(", up %s", time.Duration(d.UptimeS*float64(time.Second)).Round(time.Second))
	}
	if !d.LastSync.IsZero() {
		s += fmt.Sprintf(", last sync %s ago", time.Duration(d.LastSyncS*float64(time.Second)).Round(time.Second))
	}
	if d.LastError != "" {
		s += ", last sync FAILED: " + d.LastError
	}
	return s
}
