package main

import (
	"bytes"
	"drfs/internal/httpserve"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

func TestLineHandler(t *testing.T) {
	var out bytes.Buffer
	l := newLogger(&out, "text")
	l.Info("stopped")
	vl := l.With("volume", "vms")
	vl.Info("replica is at seq 7, resuming from there", "seq", 7)
	vl.Warn("checkpoint", "err", errors.New("no space left"))
	vl.WithGroup("g").Info("grouped", "a", 1)
	httpserve.ErrorLog(l).Printf("http: TLS handshake error from 127.0.0.1:5: bad certificate")

	want := []string{
		`stopped`,
		`replica is at seq 7, resuming from there volume=vms seq=7`,
		`WARN checkpoint volume=vms err="no space left"`,
		`grouped volume=vms g.a=1`,
		`WARN http: TLS handshake error from 127.0.0.1:5: bad certificate`,
	}
	stamp := regexp.MustCompile(`^drfs: \d{4}/\d\d/\d\d \d\d:\d\d:\d\d `)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, line := range lines {
		loc := stamp.FindStringIndex(line)
		if loc == nil {
			t.Errorf("line %q does not start with the prefix and time", line)
			continue
		}
		if got := line[loc[1]:]; got != want[i] {
			t.Errorf("line %d: %q, want %q", i, got, want[i])
		}
	}
}

func TestJSONLogger(t *testing.T) {
	var out bytes.Buffer
	newLogger(&out, "json").With("volume", "vms").Info("change log applied", "from", 3, "to", 9)
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if m["msg"] != "change log applied" || m["volume"] != "vms" || m["from"] != 3.0 || m["to"] != 9.0 || m["level"] != slog.LevelInfo.String() {
		t.Errorf("json line %s", out.String())
	}
}

// One-shot commands print the message without the time.
func TestLineHandler_NoStamp(t *testing.T) {
	var out bytes.Buffer
	slog.New(newLineHandler(&out, "drfs: ", false)).Info("linked it", "link", "/r/v/data")
	if got, want := out.String(), "drfs: linked it link=/r/v/data\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
