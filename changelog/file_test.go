package changelog_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"drfs/changelog"
	"drfs/journal"
)

func TestReadFileHeader(t *testing.T) {
	l := &changelog.Log{Header: changelog.Header{Kind: changelog.KindJournal, VolumeID: "vol-1", Generation: 3,
		FromSeq: 7, ToSeq: 8, Created: time.Now().UTC().Truncate(time.Microsecond)},
		Ops: []journal.Op{journal.OpCreate{Path: "f", Mode: 0o644}, journal.OpWrite{Path: "f", Data: make([]byte, 1<<20)}}}
	path, _, err := changelog.WriteFile(t.TempDir(), l)
	if err != nil {
		t.Fatal(err)
	}
	h, err := changelog.ReadFileHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.VolumeID != "vol-1" || h.Generation != 3 || h.FromSeq != 7 || h.ToSeq != 8 || !h.Created.Equal(l.Created) {
		t.Errorf("header %+v, want %+v", h, l.Header)
	}
	b, _ := os.ReadFile(path)
	b[20] ^= 0xff
	os.WriteFile(path, b, 0o644)
	if _, err := changelog.ReadFileHeader(path); !errors.Is(err, changelog.ErrChecksum) {
		t.Errorf("corrupt header: err %v, want ErrChecksum", err)
	}
}
