package keyfile

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/seqknock/seqknock/totp"
)

// FuzzParse feeds arbitrary bytes to the key file parser. It returns a key
// of a valid length or an error of one line that names the file and never
// echoes the file's content; an accepted key encodes back to the same line.
// Run: go test ./totp/keyfile -run '^$' -fuzz FuzzParse
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
		"/////////////////////w==\r\n",
		"  AAECAwQFBgcICQoLDA0ODw==  \n",
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\nAAEC\n",
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
		"AAECAwQFBgcICQoL\n",
		"not base64!\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := Parse("f.key", data)
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "load key: f.key: ") {
				t.Fatalf("error is not one line naming the file: %q", msg)
			}
			if line := bytes.TrimSpace(data); len(line) >= 8 && strings.Contains(msg, string(line)) {
				t.Fatalf("error echoes the file: %q", msg)
			}
			return
		}
		if totp.ValidateKey(key) != nil {
			t.Fatalf("accepted a key of %d bytes", len(key))
		}
		if got := base64.StdEncoding.EncodeToString(key); got != string(bytes.TrimSpace(data)) {
			t.Fatalf("accepted %q, which is not the strict encoding %q", data, got)
		}
	})
}
