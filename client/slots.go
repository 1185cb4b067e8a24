package client

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

var errNoStore = errors.New("no slot store")

// ErrSlotsSpent is wrapped when every slot of a period has been used.
var ErrSlotsSpent = errors.New("every slot of this period is spent; wait for the next period")

// SlotID names one (port, realm, key) for the slot file without writing
// down the key: an HMAC of the rest under the key.
//
// The host is left out on purpose. The server spends a knock by (port, ISN)
// whatever address the SYN went to, so one server reached by two names (or
// by IPv4 and IPv6) must not hand out the same slot twice: that SYN would be
// dropped as a replay and cost a SYN timeout. Servers that share a key and
// realm share the slots of a period instead, which costs nothing until more
// than `slots` connections a period go to them together.
func SlotID(key []byte, realm string, port uint16) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("seqknock/slot-id/v1\x00" + realm + "\x00"))
	m.Write(binary.BigEndian.AppendUint16(nil, port))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// SlotStore keeps, per SlotID, the counter of the last period used and the
// next free slot in it, in one JSON file under Dir, locked with flock so
// parallel clients never take the same slot.
type SlotStore struct {
	Dir string
	// Owner, when not -1, is the uid and gid that should own what the
	// store creates (a root-run client writing a user's state).
	UID, GID int
}

type slotEntry struct {
	Counter uint64 `json:"counter"`
	Next    int    `json:"next"`
}

// Reserve returns the next free slot of counter for id and marks it used.
func (s *SlotStore) Reserve(id string, counter uint64, slots int) (int, error) {
	if err := s.mkdirs(); err != nil {
		return 0, fmt.Errorf("slot state: %w", err)
	}
	path := filepath.Join(s.Dir, "slots.json")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, fmt.Errorf("slot state: %w", err)
	}
	defer f.Close()
	s.chown(path)
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return 0, fmt.Errorf("slot state: lock %s: %w", path, err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	entries := map[string]slotEntry{}
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("slot state: %w", err)
	}
	if fi.Size() > 0 {
		if err := json.NewDecoder(f).Decode(&entries); err != nil {
			// A damaged file only costs slot reuse: start afresh.
			entries = map[string]slotEntry{}
		}
	}
	e := entries[id]
	if e.Counter != counter {
		e = slotEntry{Counter: counter}
	}
	if e.Next >= slots {
		return 0, fmt.Errorf("slot state: %w (%d slots)", ErrSlotsSpent, slots)
	}
	slot := e.Next
	e.Next++
	entries[id] = e
	// Forget periods long gone.
	for k, v := range entries {
		if v.Counter+64 < counter {
			delete(entries, k)
		}
	}
	b, err := json.Marshal(entries)
	if err != nil {
		return 0, err
	}
	if err := f.Truncate(0); err != nil {
		return 0, fmt.Errorf("slot state: %w", err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return 0, fmt.Errorf("slot state: %w", err)
	}
	return slot, nil
}

// mkdirs creates Dir and any missing parent, each owned by UID/GID when
// set: a root-run client must not leave root-owned directories in a user's
// home.
func (s *SlotStore) mkdirs() error {
	var missing []string
	for d := filepath.Clean(s.Dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o700); err != nil && !os.IsExist(err) {
			return err
		}
		s.chown(missing[i])
	}
	return nil
}

func (s *SlotStore) chown(path string) {
	if s.UID > 0 {
		os.Lchown(path, s.UID, s.GID)
	}
}
