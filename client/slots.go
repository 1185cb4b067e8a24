package client

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// next free slot in it, in one JSON file, locked with flock so parallel
// clients never take the same slot.
//
// The file is Base/Sub.../slots.json. Base (the user's home, or
// $XDG_STATE_HOME) is opened as given (and made, 0700, if missing); every directory of Sub is opened
// with openat and O_NOFOLLOW|O_DIRECTORY (created with mode 0700 where
// missing) and must belong to the process's user; the file is opened with
// O_NOFOLLOW, created with mode 0600, and must be a regular file of that
// user. A symbolic link anywhere below Base is refused, never followed.
type SlotStore struct {
	Base string
	Sub  []string
}

const slotFile = "slots.json"

type slotEntry struct {
	Counter uint64 `json:"counter"`
	Next    int    `json:"next"`
}

// maxSlotFile bounds what Reserve reads of the file: far more than the
// entries of 64 periods of any real number of servers.
const maxSlotFile = 1 << 20

// parseSlots reads the slot file, {"ID":{"counter":C,"next":N},...}, and
// returns nil when it is damaged.
func parseSlots(b []byte) map[string]slotEntry {
	var m map[string]slotEntry
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil
	}
	return m
}

// Reserve returns the next free slot of counter for id and marks it used.
func (s *SlotStore) Reserve(id string, counter uint64, slots int) (int, error) {
	f, err := s.open()
	if err != nil {
		return 0, fmt.Errorf("slot state: %w", err)
	}
	defer f.Close()
	path := f.Name()
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
		b, err := io.ReadAll(io.LimitReader(f, maxSlotFile))
		if err != nil {
			return 0, fmt.Errorf("slot state: read %s: %w", path, err)
		}
		if entries = parseSlots(b); entries == nil {
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
		return 0, fmt.Errorf("slot state: %w", err)
	}
	// Written over in place, cut only when it shrank: the file keeps its
	// blocks (truncating to 0 first freed them for the write to allocate
	// again, on every start). A crash half way leaves damaged JSON, which
	// costs only slot reuse, as above.
	if _, err := f.WriteAt(b, 0); err != nil {
		return 0, fmt.Errorf("slot state: %w", err)
	}
	if int64(len(b)) < fi.Size() {
		if err := f.Truncate(int64(len(b))); err != nil {
			return 0, fmt.Errorf("slot state: %w", err)
		}
	}
	return slot, nil
}

// open opens (creating where missing) the slot file without following a
// symbolic link anywhere below Base.
func (s *SlotStore) open() (*os.File, error) {
	uid := os.Geteuid()
	dir, err := unix.Open(s.Base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		// A fresh $XDG_STATE_HOME: made as the process's user, who chose it.
		if err := os.MkdirAll(s.Base, 0o700); err != nil {
			return nil, err
		}
		dir, err = unix.Open(s.Base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.Base, err)
	}
	path := s.Base
	for _, name := range s.Sub {
		path = filepath.Join(path, name)
		next, err := openDirAt(dir, name, path, uid)
		unix.Close(dir)
		if err != nil {
			return nil, err
		}
		dir = next
	}
	defer unix.Close(dir)
	var st unix.Stat_t
	if err := unix.Fstat(dir, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&0o077 != 0 {
		if err := unix.Fchmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("chmod 700 %s: %w", path, err)
		}
	}
	path = filepath.Join(path, slotFile)
	fd, err := unix.Openat(dir, slotFile, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link; refusing to follow it", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != uid {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is not a regular file of uid %d; refusing it", path, uid)
	}
	if st.Mode&0o777 != 0o600 {
		if err := unix.Fchmod(fd, 0o600); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("chmod 600 %s: %w", path, err)
		}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openDirAt opens the directory name under dir without following a
// symbolic link, creating it with mode 0700 if it is missing, and checks
// that it belongs to uid.
func openDirAt(dir int, name, path string, uid int) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dir, name, flags, 0)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkdirat(dir, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("mkdir %s: %w", path, err)
		}
		fd, err = unix.Openat(dir, name, flags, 0)
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("%s is a symbolic link or not a directory; refusing to follow it", path)
		}
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("stat %s: %w", path, err)
	}
	if int(st.Uid) != uid {
		unix.Close(fd)
		return -1, fmt.Errorf("%s belongs to uid %d, not to uid %d; refusing it", path, st.Uid, uid)
	}
	return fd, nil
}
