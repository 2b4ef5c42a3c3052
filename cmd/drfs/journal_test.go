package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"drfs/journal"
)

// TestJournalDump prints a journal holding every op type; the output is the documented
// JSON-lines format, fixed in testdata/journal-dump.golden.
func TestJournalDump(t *testing.T) {
	state := t.TempDir()
	j, err := journal.Open(filepath.Join(state, "journal"), journal.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ops := []journal.Op{
		journal.OpMkdir{Path: "vm1", Mode: 0o755, Uid: 1, Gid: 2, Ino: 10},
		journal.OpCreate{Path: "vm1/disk.raw", Mode: 0o600, Uid: 107, Gid: 107, Ino: 11},
		journal.OpWrite{Path: "vm1/disk.raw", Ino: 11, Off: 1 << 40, Data: []byte("hello, world")},
		journal.OpWrite{Path: "vm1/disk.raw", Ino: 11, Off: 0, Data: nil},
		journal.OpTruncate{Path: "vm1/disk.raw", Ino: 11, Size: 10 << 30},
		journal.OpFallocate{Path: "vm1/disk.raw", Ino: 11, Mode: 3, Off: 4096, Len: 8192},
		journal.OpMknod{Path: "vm1/fifo", Mode: 0o10644, Rdev: 0x0801, Ino: 12},
		journal.OpSymlink{Path: "vm1/link", Target: "../../etc/anything", Uid: 3, Gid: 4, Ino: 13},
		journal.OpLink{OldPath: "vm1/disk.raw", NewPath: "vm1/disk.hard", Ino: 11},
		journal.OpUnlink{Path: "vm1/disk.hard", Ino: 11},
		journal.OpRename{OldPath: "vm1/disk.raw", NewPath: "vm1/disk.img", Flags: 1, Ino: 11},
		journal.OpSetattr{Path: ".", Valid: journal.SetMode | journal.SetMtime, Mode: 0o700, Atime: -5, Mtime: 1_700_000_000_123_456_789},
		journal.OpSetxattr{Path: "vm1/disk.img", Name: "user.drfs", Value: []byte{0, 1, 2}, Flags: 1, Ino: 11},
		journal.OpRemovexattr{Path: ".", Name: "user.x", Ino: 1},
		journal.OpRmdir{Path: "vm1/empty", Ino: 14},
		journal.OpHot{Ino: 11, Region: 7},
		journal.OpSetattr{Path: "vm1", Valid: journal.SetUid, Uid: 5, Ino: 10},
	}
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
