package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCalendarInterval(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want time.Duration
		ok   bool
	}{
		{"*:*:00/30", 30 * time.Second, true},
		{"*:*:0/15", 15 * time.Second, true},
		{"*:*:00/1", time.Second, true},
		{"*:*:00", time.Minute, true},
		{"minutely", time.Minute, true},
		{"*:00/5:00", 5 * time.Minute, true},
		{"*:0/10", 10 * time.Minute, true},
		{"hourly", time.Hour, true},
		{"*:*:00/45", 0, false}, // 45 does not divide a minute
		{"*:*:05/30", 0, false}, // not from the start of the minute
		{"Mon *-*-* 00:00:00", 0, false},
		{"daily", 0, false},
	} {
		got, ok := CalendarInterval(tc.spec)
		if got != tc.want || ok != tc.ok {
			t.Errorf("CalendarInterval(%q) = %v %v, want %v %v", tc.spec, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		period time.Duration
		want   string
	}{
		{30 * time.Second, "*:*:00/30"}, {15 * time.Second, "*:*:00/15"}, {time.Minute, "*:*:00"},
		{2 * time.Minute, "*:00/2:00"}, {time.Hour, "hourly"}, {45 * time.Second, ""}, {90 * time.Second, ""},
	} {
		if got := CalendarFor(tc.period); got != tc.want {
			t.Errorf("CalendarFor(%v) = %q, want %q", tc.period, got, tc.want)
		}
		if tc.want != "" {
			if iv, ok := CalendarInterval(tc.want); !ok || iv != tc.period {
				t.Errorf("CalendarInterval(CalendarFor(%v)) = %v %v", tc.period, iv, ok)
			}
		}
	}
}

// TestTimerWarning: the unit file of the first dir that has one, then its
// drop-ins by name; a warning says the fix.
func TestTimerWarning(t *testing.T) {
	etc, lib := t.TempDir(), t.TempDir()
	dirs := []string{etc, lib}
	write := func(path, text string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	warn := func(period time.Duration) string {
		t.Helper()
		w, err := TimerWarning(dirs, period)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	if w := warn(15 * time.Second); w != "" {
		t.Errorf("no unit: %q", w)
	}
	shipped, err := os.ReadFile(filepath.Join("..", "scripts", "systemd", TimerUnit))
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(lib, TimerUnit), string(shipped))
	if w := warn(30 * time.Second); w != "" {
		t.Errorf("shipped timer, default period: %q", w)
	}
	want := filepath.Join(lib, TimerUnit) + ": OnCalendar=*:*:00/30 fires every 30s but period is 15s: with the timer form, set OnCalendar=*:*:00/15 (systemctl edit seqknockd-sync.timer)"
	if w := warn(15 * time.Second); w != want {
		t.Errorf("period 15s:\n got %q\nwant %q", w, want)
	}
	if w := warn(45 * time.Second); !strings.HasSuffix(w, "use seqknockd.service instead: a calendar timer cannot fire every 45s") {
		t.Errorf("period 45s: %q", w)
	}
	// A drop-in that resets and sets the schedule fixes it; one in /etc of
	// the same name hides lib's.
	write(filepath.Join(lib, TimerUnit+".d", "period.conf"), "[Timer]\nOnCalendar=\nOnCalendar=*:*:00/20\n")
	write(filepath.Join(etc, TimerUnit+".d", "period.conf"), "[Timer]\nOnCalendar=\nOnCalendar=*:*:00/15\n")
	if w := warn(15 * time.Second); w != "" {
		t.Errorf("drop-in: %q", w)
	}
	// Without the reset, the unit has two schedules.
	write(filepath.Join(etc, TimerUnit+".d", "period.conf"), "[Timer]\nOnCalendar=*:*:00/15\n")
	if w := warn(15 * time.Second); !strings.Contains(w, ": 2 OnCalendar schedules; for period 15s, set OnCalendar=*:*:00/15") {
		t.Errorf("two schedules: %q", w)
	}
}
