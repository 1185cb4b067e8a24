package server

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/totp"
)

// FuzzParseConfig feeds arbitrary text to the config parser. Whatever the
// text, it returns a checked config or one *ConfigError of one line naming
// the file; a config it accepts builds a state nftgen accepts.
// Run: go test ./server -run '^$' -fuzz FuzzParseConfig
func FuzzParseConfig(f *testing.F) {
	f.Add(goodConfig)
	f.Add(minimal)
	for _, tc := range badConfigs {
		f.Add(tc.text)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseConfig("x.toml", []byte(text), fakeKeys)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("not a ConfigError: %T %v", err, err)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "config x.toml") {
				t.Fatalf("error is not one line naming the file: %q", msg)
			}
			return
		}
		if totp.ValidatePeriod(c.Period) != nil || c.Slots < 1 || c.Slots > totp.MaxSlots || len(c.Users) == 0 || len(c.Services) == 0 {
			t.Fatalf("accepted an unchecked config: %+v", c)
		}
		if err := Desired(c, time.Unix(1_000_000, 0)).Validate(); err != nil {
			t.Fatalf("accepted config builds an invalid state: %v", err)
		}
	})
}
