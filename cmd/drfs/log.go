package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
)

// logFormatFlag registers --log-format on fs.
func logFormatFlag(fs *flag.FlagSet, format *string) {
	fs.Func("log-format", `daemon log format: "text" (one readable line per message, the default) or "json" (one object per line)`, func(v string) error {
		if v != "text" && v != "json" {
			return fmt.Errorf("want text or json, not %q", v)
		}
		*format = v
		return nil
	})
}

// newLogger returns the daemon's logger writing to w in format "text" (or "") or "json".
func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(newLineHandler(w, "drfs: ", true))
}

// commandLogger returns the logger of a one-shot command: "drfs: message key=value" lines on
// stderr, without the time.
func commandLogger() *slog.Logger { return slog.New(newLineHandler(os.Stderr, "drfs: ", false)) }

// lineHandler writes the form operators and scripts know from the log package:
//
//	drfs: 2006/01/02 15:04:05 message key=value key="quoted value"
//
// with the level shown only when it is not INFO (and the time only when stamp is set). The attributes are formatted by a
// slog.TextHandler (quoting, groups, WithAttrs) with its time, level and msg dropped.
type lineHandler struct {
	mu     *sync.Mutex
	buf    *bytes.Buffer // the attrs handler's output for the record being written
	attrs  slog.Handler
	w      io.Writer
	prefix string
	stamp  bool
}

func newLineHandler(w io.Writer, prefix string, stamp bool) *lineHandler {
	buf := new(bytes.Buffer)
	drop := func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
			return slog.Attr{}
		}
		return a
	}
	return &lineHandler{mu: new(sync.Mutex), buf: buf, w: w, prefix: prefix, stamp: stamp,
		attrs: slog.NewTextHandler(buf, &slog.HandlerOptions{ReplaceAttr: drop})}
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *lineHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.attrs.Handle(ctx, r); err != nil {
		return err
	}
	attrs := bytes.TrimSuffix(h.buf.Bytes(), []byte("\n"))
	line := make([]byte, 0, len(h.prefix)+20+len(r.Message)+1+len(attrs)+1)
	line = append(line, h.prefix...)
	if h.stamp && !r.Time.IsZero() {
		line = r.Time.AppendFormat(line, "2006/01/02 15:04:05 ")
	}
	if r.Level != slog.LevelInfo {
		line = append(line, r.Level.String()...)
		line = append(line, ' ')
	}
	line = append(line, r.Message...)
	if len(attrs) > 0 {
		line = append(line, ' ')
		line = append(line, attrs...)
	}
	line = append(line, '\n')
	_, err := h.w.Write(line)
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = h.attrs.WithAttrs(as)
	return &c
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.attrs = h.attrs.WithGroup(name)
	return &c
}
