package client

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/seqknock/seqknock/totp"
)

// FuzzParseConfig feeds arbitrary text to the client config parser:
// whatever the text, it returns checked entries or one error of one line
// naming the file.
// Run: go test ./client -run '^$' -fuzz FuzzParseConfig
func FuzzParseConfig(f *testing.F) {
	f.Add(clientConfig)
	for _, s := range []string{
		"[[host]]\nmatch = \"x\"\n",
		"[[host]]\nmatch = \"[\"\nkey_file = \"k\"\n",
		"[[host]]\nmatch = \"x\"\nkey_file = \"k\"\nport = 0\nslots = 300\nperiod = \"1.5s\"\n",
		"[[host]]\nmatch = \"x\"\nkeyfile = \"k\"\n",
		"[[host]\n",
		"[[host]]\nmatch = \"*\"\nkey_file = \"~/k\"\nrealm = \"r\"\nport = 22\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseConfig("/c/c.toml", []byte(text), "/h")
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "config /c/c.toml") {
				t.Fatalf("error is not one line naming the file: %q", msg)
			}
			return
		}
		for _, e := range c.Hosts {
			if e.Match == "" || !filepath.IsAbs(e.KeyFile) || totp.ValidatePeriod(e.Period) != nil ||
				e.Slots < 1 || e.Slots > totp.MaxSlots || totp.ValidateRealm(e.Realm) != nil {
				t.Fatalf("accepted an unchecked entry: %+v", e)
			}
		}
	})
}
