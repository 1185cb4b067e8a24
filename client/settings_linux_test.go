//go:build linux

package client

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/seqknock/seqknock/totp"
)

func ptr[T any](v T) *T { return &v }

// TestResolve: the [[host]] of the alias wins over that of the host, each
// flag overrides its field, --key-file drops the fallbacks, and with no
// [[host]] the defaults apply.
func TestResolve(t *testing.T) {
	cfg, dir := settingsConfig(t)
	type want struct {
		keys           int
		realm          string
		period         time.Duration
		slots          int
		network        string
		synTimeout     time.Duration
		timeout, clock time.Duration
	}
	for _, tc := range []struct {
		name string
		host string
		f    Flags
		want want
	}{
		{"host entry", "prod", Flags{}, want{1, "lab", 10 * time.Second, 2, "tcp", 0, 0, 0}},
		{"alias before host", "a.example.net", Flags{Alias: "prod"}, want{1, "lab", 10 * time.Second, 2, "tcp", 0, 0, 0}},
		{"alias matching nothing, host matches", "db.example.net", Flags{Alias: "db"}, want{2, "", totp.DefaultPeriod, totp.DefaultSlots, "tcp", 0, 0, 0}},
		{"fallback keys", "db.example.net", Flags{}, want{2, "", totp.DefaultPeriod, totp.DefaultSlots, "tcp", 0, 0, 0}},
		{"flags override", "prod", Flags{Realm: ptr("other"), Period: ptr(60 * time.Second), Slots: ptr(8), IPv6: true,
			SynTimeout: time.Second, Timeout: 5 * time.Second, ClockOffset: -4 * time.Second},
			want{1, "other", 60 * time.Second, 8, "tcp6", time.Second, 5 * time.Second, -4 * time.Second}},
		{"bind flag", "prod", Flags{BindSourcePort: ptr(true)}, want{1, "lab", 10 * time.Second, 2, "tcp", 0, 0, 0}},
		{"empty realm flag overrides", "prod", Flags{Realm: ptr("")}, want{1, "", 10 * time.Second, 2, "tcp", 0, 0, 0}},
		{"key-file drops fallbacks", "db.example.net", Flags{KeyFile: filepath.Join(dir, "a.key"), IPv4: true}, want{1, "", totp.DefaultPeriod, totp.DefaultSlots, "tcp4", 0, 0, 0}},
		{"no entry, key-file: defaults", "198.18.0.1", Flags{KeyFile: filepath.Join(dir, "a.key")}, want{1, "", totp.DefaultPeriod, totp.DefaultSlots, "tcp", 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Resolve(cfg, tc.f, tc.host, 22)
			if err != nil {
				t.Fatal(err)
			}
			got := want{1 + len(s.Fallback), s.Realm, s.Period, s.Slots, s.Network, s.SynTimeout, s.Timeout, s.ClockOffset}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !slices.Equal(s.Key, testKey) {
				t.Errorf("key %x, want the test key", s.Key)
			}
			if s.BindSourcePort != (tc.f.BindSourcePort != nil && *tc.f.BindSourcePort) {
				t.Errorf("bind source port %v with flag %v", s.BindSourcePort, tc.f.BindSourcePort)
			}
			if s.OnAttempt != nil || s.OnBroker != nil || s.Reserve != nil {
				t.Errorf("dialer %+v: hooks or a slot store set without -v", s)
			}
		})
	}
}

// TestResolveErrors: mistakes in the flags, and a host no entry covers
// without --key-file, are usage errors naming the flag; a key file that
// cannot be read is not.
func TestResolveErrors(t *testing.T) {
	cfg, dir := settingsConfig(t)
	missing := filepath.Join(dir, "missing.key")
	for _, tc := range []struct {
		name  string
		host  string
		f     Flags
		usage bool
		want  string
	}{
		{"-4 and -6", "prod", Flags{IPv4: true, IPv6: true}, true, "-4 and -6 exclude each other"},
		{"no entry", "other", Flags{}, true, "no [[host]] in " + cfg.Path + " matches other port 22; add one, or give --key-file"},
		{"no entry for alias or host", "other", Flags{Alias: "al"}, true, "matches al or other port 22"},
		{"period", "prod", Flags{Period: ptr(1500 * time.Millisecond)}, true, "--period: " + totp.ErrPeriod.Error()},
		{"zero period", "prod", Flags{Period: ptr(time.Duration(0))}, true, "--period: "},
		{"slots 0", "prod", Flags{Slots: ptr(0)}, true, "--slots 0 out of range 1..256"},
		{"slots 257", "prod", Flags{Slots: ptr(257)}, true, "--slots 257 out of range 1..256"},
		{"realm", "prod", Flags{Realm: ptr(strings.Repeat("r", 256))}, true, "--realm: realm is 256 bytes"},
		{"missing key", "prod", Flags{KeyFile: missing}, false, missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Resolve(cfg, tc.f, tc.host, 22)
			if err == nil {
				t.Fatalf("no error: %+v", s)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if got := errors.As(err, new(UsageError)); got != tc.usage {
				t.Errorf("usage error %v, want %v (%v)", got, tc.usage, err)
			}
		})
	}
	// A fallback key that cannot be read fails the whole resolution.
	os.Remove(filepath.Join(dir, "old.key"))
	if _, err := Resolve(cfg, Flags{}, "db.example.net", 22); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing fallback key: %v", err)
	}
}

// TestResolveVerbose: -v says which entry matched and where the key came
// from, and the dialer reports each knock with the slots and the wait.
func TestResolveVerbose(t *testing.T) {
	cfg, dir := settingsConfig(t)
	var lines []string
	logf := func(format string, a ...any) { lines = append(lines, fmt.Sprintf(format, a...)) }
	kf := filepath.Join(dir, "a.key")
	s, err := Resolve(cfg, Flags{Alias: "prod", KeyFile: kf, Verbosef: logf}, "198.18.0.1", 22)
	if err != nil {
		t.Fatal(err)
	}
	s.OnAttempt(netip.MustParseAddrPort("198.18.0.1:22"), 7, 1, 99)
	want := []string{
		`prod matches [[host]] match = "prod" in ` + cfg.Path,
		"key from --key-file " + kf,
		"knock 198.18.0.1:22 counter 7 slot 1 (of 2), waiting 3s for a SYN-ACK",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestCheckKnockFlags: the checks isn and Resolve share.
func TestCheckKnockFlags(t *testing.T) {
	if err := CheckKnockFlags("", totp.DefaultPeriod, totp.DefaultSlots); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	if err := CheckKnockFlags(strings.Repeat("r", 255), time.Hour, totp.MaxSlots); err != nil {
		t.Errorf("limits refused: %v", err)
	}
	for _, err := range []error{
		CheckKnockFlags("", 0, 4), CheckKnockFlags("", 30*time.Second, 0), CheckKnockFlags(strings.Repeat("r", 256), 30*time.Second, 4),
	} {
		if !errors.As(err, new(UsageError)) || errors.Unwrap(err) == nil {
			t.Errorf("%v: want a usage error wrapping the cause", err)
		}
	}
}

// TestKnock: isn's realm, period and slots: the defaults, each flag given
// over them, checked.
func TestKnock(t *testing.T) {
	realm, period, slots, err := Knock(Flags{})
	if err != nil || realm != "" || period != totp.DefaultPeriod || slots != totp.DefaultSlots {
		t.Errorf("defaults: %q %v %d %v", realm, period, slots, err)
	}
	realm, period, slots, err = Knock(Flags{Realm: ptr("lab"), Period: ptr(10 * time.Second), Slots: ptr(256)})
	if err != nil || realm != "lab" || period != 10*time.Second || slots != 256 {
		t.Errorf("flags: %q %v %d %v", realm, period, slots, err)
	}
	if _, _, _, err := Knock(Flags{Slots: ptr(0)}); !errors.As(err, new(UsageError)) || err.Error() != "--slots 0 out of range 1..256" {
		t.Errorf("slots 0: %v", err)
	}
}

// TestResolveBindSourcePort: the [[host]]'s bind_source_port reaches the
// dialer; --bind-source-port=false turns it off, and on for a host without.
func TestResolveBindSourcePort(t *testing.T) {
	cfg, _ := settingsConfig(t)
	for _, tc := range []struct {
		host string
		flag *bool
		want bool
	}{{"bound", nil, true}, {"bound", ptr(false), false}, {"prod", nil, false}, {"prod", ptr(true), true}} {
		s, err := Resolve(cfg, Flags{BindSourcePort: tc.flag}, tc.host, 22)
		if err != nil {
			t.Fatal(err)
		}
		if s.BindSourcePort != tc.want {
			t.Errorf("%s, flag %v: dialer %v; want %v", tc.host, tc.flag, s.BindSourcePort, tc.want)
		}
	}
}
