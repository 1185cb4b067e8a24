package server

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TimerUnit is the unit of the timer form, which must fire at every period
// boundary.
const TimerUnit = "seqknockd-sync.timer"

// UnitDirs are where systemd looks for units, most important first.
var UnitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
	"/usr/lib/systemd/system", "/lib/systemd/system"}

// OnCalendar returns the OnCalendar specs of unit as systemd would see them:
// the first unit file found in dirs, then its drop-ins (NAME.d/*.conf of
// every dir, by file name, an earlier dir's file hiding a later one's of the
// same name); an empty OnCalendar= clears the list. path is the unit file;
// "" when there is none.
func OnCalendar(dirs []string, unit string) (specs []string, path string, err error) {
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, unit)); err == nil {
			path = filepath.Join(d, unit)
			break
		}
	}
	if path == "" {
		return nil, "", nil
	}
	files := []string{path}
	dropins := map[string]string{}
	for _, d := range dirs {
		matches, _ := filepath.Glob(filepath.Join(d, unit+".d", "*.conf"))
		for _, m := range matches {
			if _, seen := dropins[filepath.Base(m)]; !seen {
				dropins[filepath.Base(m)] = m
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(dropins)) {
		files = append(files, dropins[n])
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, path, fmt.Errorf("timer %s: %w", f, err)
		}
		section := ""
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "[") {
				section = line
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok || section != "[Timer]" || strings.TrimSpace(k) != "OnCalendar" {
				continue
			}
			if v = strings.TrimSpace(v); v == "" {
				specs = nil
			} else {
				specs = append(specs, v)
			}
		}
	}
	return specs, path, nil
}

// CalendarInterval returns how often a calendar spec of the forms a
// period timer uses fires, counted from the start of each minute or hour:
// "*:*:00/N" (every N seconds), "*:00/N:00" or "*:0/N" (every N minutes),
// "*:*:00" or "minutely" (every minute), "hourly". ok is false for anything
// else, and for a step that does not divide the minute or hour, which
// could not fire at every boundary of a period.
func CalendarInterval(spec string) (interval time.Duration, ok bool) {
	switch spec {
	case "minutely", "*:*:00", "*:*:0":
		return time.Minute, true
	case "hourly", "*:00:00", "*:0:0", "*:00", "*:0":
		return time.Hour, true
	}
	step := func(field string, unit time.Duration, per int) (time.Duration, bool) {
		start, n, ok := strings.Cut(field, "/")
		if !ok || (start != "0" && start != "00") {
			return 0, false
		}
		v, err := strconv.Atoi(n)
		if err != nil || v < 1 || per%v != 0 {
			return 0, false
		}
		return time.Duration(v) * unit, true
	}
	f := strings.Split(spec, ":")
	switch {
	case len(f) == 3 && f[0] == "*" && f[1] == "*":
		return step(f[2], time.Second, 60)
	case len(f) == 3 && f[0] == "*" && (f[2] == "00" || f[2] == "0"):
		return step(f[1], time.Minute, 60)
	case len(f) == 2 && f[0] == "*":
		return step(f[1], time.Minute, 60)
	}
	return 0, false
}

// CalendarFor returns the OnCalendar spec that fires at every boundary of
// period, or "" when a calendar timer cannot (the period does not divide a
// minute or an hour).
func CalendarFor(period time.Duration) string {
	switch {
	case period < time.Minute && time.Minute%period == 0 && period%time.Second == 0:
		return fmt.Sprintf("*:*:00/%d", period/time.Second)
	case period == time.Minute:
		return "*:*:00"
	case period < time.Hour && time.Hour%period == 0 && period%time.Minute == 0:
		return fmt.Sprintf("*:00/%d:00", period/time.Minute)
	case period == time.Hour:
		return "hourly"
	}
	return ""
}

// TimerWarning returns a warning when the timer unit (looked up in dirs)
// does not fire at every boundary of period, or "" when it does or there is
// no timer unit.
func TimerWarning(dirs []string, period time.Duration) (string, error) {
	specs, path, err := OnCalendar(dirs, TimerUnit)
	if err != nil || path == "" {
		return "", err
	}
	fix := "use seqknockd.service instead: a calendar timer cannot fire every " + period.String()
	if spec := CalendarFor(period); spec != "" {
		fix = "set OnCalendar=" + spec + " (systemctl edit " + TimerUnit + ")"
	}
	if len(specs) != 1 {
		return fmt.Sprintf("%s: %d OnCalendar schedules; for period %v, %s", path, len(specs), period, fix), nil
	}
	iv, ok := CalendarInterval(specs[0])
	switch {
	case !ok:
		return fmt.Sprintf("%s: OnCalendar=%s: cannot tell whether it fires at every %v period boundary; %s",
			path, specs[0], period, fix), nil
	case iv != period:
		return fmt.Sprintf("%s: OnCalendar=%s fires every %v but period is %v: with the timer form, %s",
			path, specs[0], iv, period, fix), nil
	}
	return "", nil
}
