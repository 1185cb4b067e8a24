package server

import (
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/nftgen"
)

// liveOf is the table a sync of cfg at now leaves, as Read finds it.
func liveOf(cfg *Config, now time.Time) *nftgen.Live {
	s := Desired(cfg, now)
	live := &nftgen.Live{Exists: true, RulesCurrent: true, Rules: s.Rules, Ports: s.Ports, ValidCount: len(s.Valid)}
	for _, e := range s.Valid {
		live.ValidKeys = append(live.ValidKeys, nftgen.Key{Port: e.Port, ISN: e.ISN})
	}
	return live
}

func TestCompareStatus(t *testing.T) {
	parse := func(text string) *Config {
		t.Helper()
		c, err := ParseConfig("/etc/seqknock/seqknockd.toml", []byte(text), fakeKeys)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cfg := parse(goodConfig)
	now := time.Unix(1_000_001, 0)
	for _, tc := range []struct {
		name string
		live func() *nftgen.Live
		cfg  *Config
		at   time.Time
		want []string
	}{
		{"current", func() *nftgen.Live { return liveOf(cfg, now) }, cfg, now, nil},
		{"current a period later, before the sync", func() *nftgen.Live { return liveOf(cfg, now) }, cfg, now.Add(2 * time.Second), nil},
		{"absent", func() *nftgen.Live { return &nftgen.Live{} }, cfg, now, []string{"table inet seqknock is not installed"}},
		{"rules", func() *nftgen.Live { l := liveOf(cfg, now); l.MarkBit = 1; return l }, cfg, now,
			[]string{"the rules are not the ones this version writes"}},
		{"rules of another version", func() *nftgen.Live { l := liveOf(cfg, now); l.RulesCurrent = false; return l }, cfg, now,
			[]string{"the rules are not the ones this version writes"}},
		{"port added to the config", func() *nftgen.Live { return liveOf(cfg, now) },
			parse(goodConfig + "[[service]]\nport = 80\n"), now,
			[]string{"port 80 is in the config but not protected"}},
		{"port removed from the config", func() *nftgen.Live { return liveOf(cfg, now) },
			parse(strings.Replace(goodConfig, "[[service]]\nport = 2222\nusers = [\"bob\"]\n", "", 1)), now,
			[]string{"port 2222 is protected but not in the config", "12 valid knocks are not from the config"}},
		{"user added", func() *nftgen.Live { return liveOf(cfg, now) },
			parse(goodConfig + "[[user]]\nname = \"carol\"\nkey_file = \"carol.key\"\n"), now,
			[]string{"user carol has no knocks in the table"}},
		{"user removed", func() *nftgen.Live {
			return liveOf(parse(goodConfig+"[[user]]\nname = \"carol\"\nkey_file = \"carol.key\"\n"), now)
		},
			cfg, now, []string{"12 valid knocks are not from the config"}},
		{"spent knocks count as present", func() *nftgen.Live {
			l := liveOf(cfg, now)
			l.UsedKeys, l.ValidKeys = l.ValidKeys, nil
			return l
		}, cfg, now, nil},
		{"a user whose keys all expired needs no knocks", func() *nftgen.Live { return liveOf(cfg, now) },
			parse(goodConfig + "[[user]]\nname = \"carol\"\nkey_files = [{ file = \"c\", not_after = 1970-01-01T00:00:01Z }]\n"), now, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := CompareStatus(tc.live(), tc.cfg, tc.at)
			if st.Current != (len(tc.want) == 0) || len(st.Differences) != len(tc.want) {
				t.Fatalf("current %v, differences %q; want %q", st.Current, st.Differences, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(st.Differences[i], w) {
					t.Errorf("difference %d: %q, want %q", i, st.Differences[i], w)
				}
			}
		})
	}
}
