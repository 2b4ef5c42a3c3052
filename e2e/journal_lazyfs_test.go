package e2e

import (
	"bytes"

	"os"
	"path/filepath"
	"testing"

	"drfs/internal/logtest"
	"drfs/journal"
)

// TestJournal_PowerLossKeepsSyncedRecords: a journal on a LazyFS disk, small segments so that
// records cross many rollovers; after every Sync that returned, a power loss must keep every
// record up to the synced seq (the write-ahead log's whole promise).
func TestJournal_PowerLossKeepsSyncedRecords(t *testing.T) {
	l := startLazyFS(t, "journal")
	dir := filepath.Join(l.Mnt, "journal")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("r"), 4100)
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	var synced journal.Seq
	for round := range rounds {
		j, err := journal.Open(dir, journal.Options{SegmentSize: 1 << 20, Logger: logtest.Logger(t)})
		if err != nil {
			t.Fatalf("round %d: open: %v", round, err)
		}
		if last := j.LastSeq(); last < synced {
			j.Close()
			t.Fatalf("round %d: after a power loss the journal ends at seq %d, but seq %d was synced", round, last, synced)
		}
		n := 300 + round*37
		for i := range n {
			seq, err := j.Append(journal.RecWrite, journal.AppendWriteHeader(nil, "f", 1, int64(i)*4096), payload)
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			if i%16 == 15 {
				if err := j.Sync(seq); err != nil {
					t.Fatalf("sync: %v", err)
				}
				synced = seq
			}
		}
		// Power loss: the process dies with the journal open (no Close), then the disk
		// loses what was not synced.
		_ = j // abandoned open, like a process that died
		l.PowerLoss()
		t.Logf("round %d: synced up to seq %d", round, synced)
	}
}
