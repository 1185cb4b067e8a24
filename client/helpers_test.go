package client

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

func writeKeyFile(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(testKey)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Readable by the unprivileged user the test runs seqknock as, which
	// then refuses it... so make it theirs and private instead.
	os.Chown(path, 65534, 65534)
	os.Chmod(path, 0o600)
}

// settingsConfig writes three keys and a config naming them into a fresh
// directory.
func settingsConfig(t *testing.T) (*Config, string) {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"a.key", "new.key", "old.key"} {
		writeKeyFile(t, filepath.Join(dir, k))
	}
	file := filepath.Join(dir, "client.toml")
	cfg, err := ParseConfig(file, []byte(`
[[host]]
match = "prod"
key_file = "a.key"
realm = "lab"
period = "10s"
slots = 2

[[host]]
match = "*.example.net"
key_files = ["new.key", "old.key"]

[[host]]
match = "bound"
key_file = "a.key"
bind_source_port = true
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, dir
}

// Path is the slot file's path.
func (s *SlotStore) Path() string {
	return filepath.Join(append(append([]string{s.Base}, s.Sub...), slotFile)...)
}
