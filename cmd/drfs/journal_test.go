package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"drfs/journal"
	"drfs/journal/journaltest"
)

// TestJournalDump prints a journal holding every op type; the output is the documented
// JSON-lines format, fixed in testdata/journal-dump.golden.
func TestJournalDump(t *testing.T) {
	state := t.TempDir()
	j, err := journal.Open(filepath.Join(state, "journal"), journal.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ops := append(journaltest.Ops(),
		journal.OpHot{Ino: 11, Region: 7},
		journal.OpSetattr{Path: "vm1", Valid: journal.SetUid, Uid: 5, Ino: 10},
	)
	for _, op := range ops {
		if _, err := j.Append(op.Type(), journal.EncodeOp(op)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Sync(j.LastSeq()); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	got := captureStdout(t, func() error {
		return (&journalCommand{state: state, to: ^uint64(0)}).Run(context.Background())
	})
	want, err := os.ReadFile(filepath.Join("testdata", "journal-dump.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("drfs journal dump printed:\n%s\nwant:\n%s", got, want)
	}
}

// captureStdout returns what fn prints on os.Stdout.
func captureStdout(t *testing.T, fn func() error) []byte {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	old := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = old }()
	out := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		out <- b
	}()
	ferr := fn()
	w.Close()
	b := <-out
	if ferr != nil {
		t.Fatalf("%v", ferr)
	}
	return b
}
