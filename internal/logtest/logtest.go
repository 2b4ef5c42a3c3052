// Package logtest sends a package's structured log to its test's log.
package logtest

import (
	"log/slog"
	"strings"
	"testing"
)

// Logger returns a logger that writes text lines to tb.Log, so they show with the failing test
// (or with -v).
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{} // the test log has its own timing
			}
			return a
		},
	}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
