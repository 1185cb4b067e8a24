package covhook

import (
	"os"
	"testing"
)

// TestFlushOutsideCoverBuild: in an ordinary build Flush neither sets
// GOCOVERDIR nor writes anything.
func TestFlushOutsideCoverBuild(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("GOCOVERDIR", "")
	Flush()
	if v := os.Getenv("GOCOVERDIR"); v != "" {
		t.Errorf("GOCOVERDIR set to %q", v)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("wrote %v", ents)
	}
}
