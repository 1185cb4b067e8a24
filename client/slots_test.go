package client

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSlotFileKept: Reserve reads a slot file as older versions wrote it
// (counter and next alone), continues its entries, and writes them back
// with the slots per period added (counter and next still there, for
// those versions); a damaged file only costs slot reuse (it starts
// afresh).
func TestSlotFileKept(t *testing.T) {
	s := &SlotStore{Base: t.TempDir(), Sub: []string{"seqknock"}}
	dir := filepath.Join(s.Base, "seqknock")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, slotFile)
	id := SlotID(testKey, "", 22)
	old := `{"` + id + `":{"counter":123456789,"next":2},"other":{"counter":123456780,"next":4}}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Reserve(id, 123456789, 4); err != nil || got != 2 {
		t.Fatalf("Reserve on an existing file = %d, %v; want slot 2", got, err)
	}
	want := `{"` + id + `":{"counter":123456789,"next":3,"used":{"123456789":3}},"other":{"counter":123456780,"next":4}}`
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Errorf("slot file after Reserve:\n%s\nwant\n%s", b, want)
	}
	for _, damaged := range []string{"{not json", "null", `[]`, `{"a":{"counter":-1,"next":2}}`} {
		if err := os.WriteFile(path, []byte(damaged), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Reserve(id, 123456789, 4); err != nil || got != 0 {
			t.Errorf("Reserve on damaged %q = %d, %v; want slot 0", damaged, got, err)
		}
	}
}

// TestSlotsOfEachPeriodKept: the slots used in each recent period are kept
// apart, so a knock sent with a skewed clock (counter 104) is not sent
// again when the clock is put right (100) and later reaches 104; another
// key has slots of its own; and a period long past is forgotten.
func TestSlotsOfEachPeriodKept(t *testing.T) {
	s := &SlotStore{Base: t.TempDir(), Sub: []string{"seqknock"}}
	id := SlotID(testKey, "", 22)
	for _, step := range []struct {
		id      string
		counter uint64
		want    int
	}{
		{id, 104, 0}, // clock 2 minutes ahead: the knock fails
		{id, 100, 0}, // clock put right: a fresh slot
		{SlotID([]byte("the-right-key-0123456789abcdefgh"), "", 22), 100, 0}, // key put right: a fresh slot
		{id, 101, 0},
		{id, 104, 1}, // the clock reaches 104: slot 0 stays spent
		{id, 101, 1}, // spent is spent, whatever period came between
		{id, 101, 2},
		{id, 101, 3},
		{id, 101, -1},
		{id, 104 + slotMemory + 1, 0},
		{id, 104, 0}, // 104 was forgotten with the periods long past
	} {
		got, err := s.Reserve(step.id, step.counter, 4)
		if step.want < 0 {
			if !errors.Is(err, ErrSlotsSpent) {
				t.Errorf("fifth knock of period %d: %d, %v", step.counter, got, err)
			}
			continue
		}
		if err != nil || got != step.want {
			t.Errorf("Reserve(counter %d) = %d, %v; want slot %d", step.counter, got, err, step.want)
		}
	}
}

// TestAdmitRemembered: Admit records the period a knock got in, in the file,
// once per period; a later Reserve (by another process: another store)
// reads it, and it outlives the slots of its period.
func TestAdmitRemembered(t *testing.T) {
	base := t.TempDir()
	s := &SlotStore{Base: base, Sub: []string{"seqknock"}}
	id := SlotID(testKey, "", 22)
	s.Reserve(id, 100, 4)
	if got := s.LastAdmitted(id); got != 0 {
		t.Fatalf("LastAdmitted before any admission = %d", got)
	}
	if err := s.Admit(id, 100); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(base, "seqknock", slotFile)
	before, _ := os.Stat(path)
	os.Chtimes(path, before.ModTime().Add(-time.Hour), before.ModTime().Add(-time.Hour))
	if err := s.Admit(id, 100); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(path); !after.ModTime().Equal(before.ModTime().Add(-time.Hour)) {
		t.Error("a second Admit in one period wrote the file again")
	}
	other := &SlotStore{Base: base, Sub: []string{"seqknock"}}
	if _, err := other.Reserve(id, 100+slotMemory+1, 4); err != nil {
		t.Fatal(err)
	}
	if got := other.LastAdmitted(id); got != 100 {
		t.Errorf("LastAdmitted after the slots of its period were forgotten = %d, want 100", got)
	}
	if got := other.LastAdmitted(SlotID(testKey, "", 23)); got != 0 {
		t.Errorf("LastAdmitted of another port = %d, want 0", got)
	}
}
