package client

import (
	"fmt"

	"github.com/seqknock/seqknock/totp"
	"github.com/seqknock/seqknock/totp/keyfile"
)

// Fingerprints returns one line per key of each [[host]] of cfg, or of
// those matching host when it is not "": the entry's match and port, the
// key's fingerprint (totp.Fingerprint) and its file, preferred key first,
// older keys marked "(fallback)". A key file that cannot be loaded is an
// error naming it.
func Fingerprints(cfg *Config, host string) ([]string, error) {
	var lines []string
	for _, e := range cfg.Hosts {
		if host != "" && !e.matches(host) {
			continue
		}
		port := "any port"
		if e.Port != 0 {
			port = fmt.Sprintf("port %d", e.Port)
		}
		for i, f := range append([]string{e.KeyFile}, e.Fallback...) {
			key, err := keyfile.Load(f)
			if err != nil {
				return nil, fmt.Errorf("fingerprint: %w", err)
			}
			l := fmt.Sprintf("%s %s: %s %s", e.Match, port, totp.Fingerprint(key), f)
			if i > 0 {
				l += " (fallback)"
			}
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		what := "any host"
		if host != "" {
			what = host
		}
		return nil, cfg.NoHost(what, "give --key-file")
	}
	return lines, nil
}
