package server

import (
	"io"
	"log/slog"
	"os"
)

// NewLogger returns the daemon's logger, writing to w (the command's error
// writer): one event a line, key=value, and no timestamp of its own when
// journald (which stamps every line) reads it.
func NewLogger(w io.Writer) *slog.Logger {
	underJournal := os.Getenv("JOURNAL_STREAM") != ""
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if underJournal && len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}
