package client

import (
	"encoding/base64"
	"os"
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
