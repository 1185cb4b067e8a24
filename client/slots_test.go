package client

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSlotFileKept: Reserve reads a slot file as it was written before
// (json.Marshal's form), continues its entries, and writes them back in the
// same form; a damaged file only costs slot reuse (it starts afresh).
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
	want := `{"` + id + `":{"counter":123456789,"next":3},"other":{"counter":123456780,"next":4}}`
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
