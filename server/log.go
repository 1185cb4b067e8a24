package server

import (
	"bytes"
	"io"
	"log/slog"
	"os"
)

// NewLogger returns the daemon's logger, writing to w (the command's error
// writer): one event a line, key=value. When journald reads it (systemd
// sets JOURNAL_STREAM), a line has no timestamp of its own (journald stamps
// every line) and starts with its syslog priority, "<3>" for an error,
// "<4>" a warning, "<6>" information, "<7>" debugging, which journald
// strips and records (SyslogLevelPrefix=, on by default): `journalctl -p
// err` shows the errors.
func NewLogger(w io.Writer) *slog.Logger {
	underJournal := os.Getenv("JOURNAL_STREAM") != ""
	if underJournal {
		w = priorityWriter{w}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if underJournal && len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// priorityWriter prefixes each record, which the text handler writes in
// one call starting with "level=LEVEL ", with its syslog priority.
type priorityWriter struct{ w io.Writer }

func (p priorityWriter) Write(b []byte) (int, error) {
	prio := "<6>"
	switch {
	case bytes.HasPrefix(b, []byte("level=ERROR")):
		prio = "<3>"
	case bytes.HasPrefix(b, []byte("level=WARN")):
		prio = "<4>"
	case bytes.HasPrefix(b, []byte("level=DEBUG")):
		prio = "<7>"
	}
	if _, err := p.w.Write(append([]byte(prio), b...)); err != nil {
		return 0, err
	}
	return len(b), nil
}
