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
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

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

// SlotStore keeps, per SlotID, the slots used in each recent period and
// the last period in which a knock got in, in one JSON file, locked with
// flock so parallel clients never take the same slot.
//
// A slot is marked used before its SYN is sent and stays used whatever
// came of it: a SYN the server admitted may have lost its SYN-ACK, and the
// server's knock is then spent. The slots of every period still in memory
// (slotMemory periods back, and any ahead) are kept apart, so a knock sent
// with a skewed clock is never sent again once the clock is put right and
// reaches that period. A different key (or realm or port) has a SlotID of
// its own, so fixing a wrong key gives fresh slots at once.
//
// The file is Base/Sub.../slots.json. Base (the user's home, or
// $XDG_STATE_HOME) is opened as given (and made, 0700, if missing); every directory of Sub is opened
// with openat and O_NOFOLLOW|O_DIRECTORY (created with mode 0700 where
// missing) and must belong to the process's user; the file is opened with
// O_NOFOLLOW, created with mode 0600, and must be a regular file of that
// user. A symbolic link anywhere below Base is refused, never followed.
//
// The zero value (no Base, no Sub) keeps its entries in memory, for the
// dials of one process: a Dialer without a Reserve uses one of its own, and
// the gateway one for all its connections. A store with a Sub but no Base
// (a user without a home) refuses to reserve: kept in memory, each run
// would start again at slot 0.
type SlotStore struct {
	Base string
	Sub  []string

	mu sync.Mutex
	// admitted is what Reserve and Admit last read or wrote of each id's
	// Admitted, so Admit writes only once per period and LastAdmitted
	// reads no file.
	admitted map[string]uint64

	memMu sync.Mutex
	mem   map[string]slotEntry // the entries of the zero value
}

const slotFile = "slots.json"

// slotEntry is one id's record. Counter and Next are the period of the
// last Reserve and the slots used in it (the whole record of older
// versions, still written for them); Used holds the slots used per
// period, that one included.
type slotEntry struct {
	Counter uint64         `json:"counter"`
	Next    int            `json:"next"`
	Used    map[uint64]int `json:"used,omitempty"`
	// Admitted is the last period in which a knock of this id got in,
	// 0 for none known.
	Admitted uint64 `json:"admitted,omitempty"`
}

// slotMemory is how many periods back the slots used are kept: far longer
// than any server's window, so a knock the server may still hold spent is
// never reused. admittedMemory is how long (in periods; a day at 30 s) an
// id that got in is remembered, for Dial's diagnosis of a knock that gets
// no answer.
const (
	slotMemory     = 64
	admittedMemory = 2880
	maxUsedPeriods = 256
)

// maxSlotFile bounds what Reserve reads of the file: far more than the
// entries of 64 periods of any real number of servers.
const maxSlotFile = 1 << 20

// used returns e's slots used per period, Counter's Next included (a
// record written by an older version has Counter and Next alone).
func (e *slotEntry) used() map[uint64]int {
	u := make(map[uint64]int, len(e.Used)+1)
	for c, n := range e.Used {
		u[c] = n
	}
	if e.Next > u[e.Counter] {
		u[e.Counter] = e.Next
	}
	return u
}

// keep reports whether e is worth keeping at counter.
func (e *slotEntry) keep(counter uint64) bool {
	if e.Admitted != 0 && e.Admitted+admittedMemory >= counter {
		return true
	}
	for c := range e.Used {
		if c+slotMemory >= counter {
			return true
		}
	}
	return e.Counter+slotMemory >= counter
}

// Reserve returns the next free slot of counter for id and marks it used.
func (s *SlotStore) Reserve(id string, counter uint64, slots int) (int, error) {
	slot := 0
	err := s.update(func(entries map[string]slotEntry) error {
		e := entries[id]
		used := e.used()
		for c := range used {
			if c+slotMemory < counter {
				delete(used, c)
			}
		}
		s.remember(id, e.Admitted)
		if used[counter] >= slots {
			return fmt.Errorf("slot state: %w (%d slots)", ErrSlotsSpent, slots)
		}
		slot = used[counter]
		used[counter]++
		for len(used) > maxUsedPeriods {
			// A clock gone wild: forget the lowest period first.
			delete(used, slices.Min(slices.Collect(maps.Keys(used))))
		}
		e.Counter, e.Next, e.Used = counter, used[counter], used
		entries[id] = e
		// Forget ids long gone.
		for k, v := range entries {
			if !v.keep(counter) {
				delete(entries, k)
			}
		}
		return nil
	})
	return slot, err
}

// Admit records that a knock of id for counter got in. It writes the file
// only the first time in a period that this store sees it.
func (s *SlotStore) Admit(id string, counter uint64) error {
	s.mu.Lock()
	known := s.admitted[id] >= counter
	s.mu.Unlock()
	if known {
		return nil
	}
	return s.update(func(entries map[string]slotEntry) error {
		e := entries[id]
		if e.Admitted < counter {
			e.Admitted = counter
			entries[id] = e
		}
		s.remember(id, e.Admitted)
		return nil
	})
}

// LastAdmitted is the last period in which a knock of id got in, as this
// store last read or wrote it (Reserve reads it), or 0.
func (s *SlotStore) LastAdmitted(id string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.admitted[id]
}

func (s *SlotStore) remember(id string, admitted uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admitted == nil {
		s.admitted = map[string]uint64{}
	}
	s.admitted[id] = admitted
}

// update reads the slot file under its lock, lets change change the
// entries, and writes them back unless change fails.
func (s *SlotStore) update(change func(map[string]slotEntry) error) error {
	if s.Base == "" && len(s.Sub) == 0 {
		s.memMu.Lock()
		defer s.memMu.Unlock()
		if s.mem == nil {
			s.mem = map[string]slotEntry{}
		}
		return change(s.mem)
	}
	f, err := s.open()
	if err != nil {
		return fmt.Errorf("slot state: %w", err)
	}
	defer f.Close()
	path := f.Name()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("slot state: lock %s: %w", path, err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	entries := map[string]slotEntry{}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("slot state: %w", err)
	}
	if fi.Size() > 0 {
		b, err := io.ReadAll(io.LimitReader(f, maxSlotFile))
		if err != nil {
			return fmt.Errorf("slot state: read %s: %w", path, err)
		}
		// A damaged file (or null) only costs slot reuse: start afresh.
		if json.Unmarshal(b, &entries) != nil || entries == nil {
			entries = map[string]slotEntry{}
		}
	}
	if err := change(entries); err != nil {
		return err
	}
	b, err := json.Marshal(entries)
	if err != nil {
		return fmt.Errorf("slot state: %w", err)
	}
	// Written over in place, cut only when it shrank: the file keeps its
	// blocks (truncating to 0 first freed them for the write to allocate
	// again, on every start). A crash half way leaves damaged JSON, which
	// costs only slot reuse, as above.
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("slot state: %w", err)
	}
	if int64(len(b)) < fi.Size() {
		if err := f.Truncate(int64(len(b))); err != nil {
			return fmt.Errorf("slot state: %w", err)
		}
	}
	return nil
}

// open opens (creating where missing) the slot file without following a
// symbolic link anywhere below Base.
func (s *SlotStore) open() (*os.File, error) {
	if s.Base == "" {
		return nil, errors.New("slot store: no home directory to keep the slots in; set HOME or XDG_STATE_HOME")
	}
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
