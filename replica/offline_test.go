package replica

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"drfs/changelog"
	"drfs/journal"
)

// offlineFixture is a replica directory holding volume "vol" (ID vol-1) after a first log,
// files[0] (seqs 1-3), and the change-log files of seqs 4, 5 and 6, each overwriting file f.
func offlineFixture(t *testing.T) (dir string, files []string) {
	t.Helper()
	dir = t.TempDir()
	v, err := OpenVolume(dir, "vol", Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := jlog(v, journal.OpCreate{Path: "f", Mode: 0o100644}, journal.OpWrite{Path: "f", Data: []byte("one")})
	mustApply(t, v, first)
	logs := t.TempDir()
	p, _, err := changelog.WriteFile(logs, first)
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, p)
	for seq, s := range []string{"two2", "thr3", "four"} {
		l := &changelog.Log{Header: changelog.Header{Kind: changelog.KindJournal, VolumeID: "vol-1", Generation: 1,
			FromSeq: first.ToSeq + uint64(seq) + 1, ToSeq: first.ToSeq + uint64(seq) + 1, Created: first.Created}, Ops: []journal.Op{journal.OpWrite{Path: "f", Data: []byte(s)}}}
		p, _, err := changelog.WriteFile(logs, l)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, files
}

// Logs given in any order are applied in seq order; one already applied is skipped.
func TestApplyFiles_Order(t *testing.T) {
	dir, files := offlineFixture(t)
	shuffled := []string{files[3], files[1], files[0], files[2]}
	res, err := ApplyFiles(context.Background(), dir, shuffled, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 3 || res.Skipped != 1 {
		t.Errorf("applied %d, skipped %d; want 3 and 1", res.Applied, res.Skipped)
	}
	st, err := ReadState(dir, "vol")
	if err != nil {
		t.Fatal(err)
	}
	if st.Applied != 6 {
		t.Errorf("applied seq %d, want 6", st.Applied)
	}
	if b, _ := os.ReadFile(filepath.Join(Layout{dir, "vol"}.Data(), "f")); string(b) != "four" {
		t.Errorf("f = %q, want the last log's write", b)
	}
	// Again: everything is a no-op.
	if res, err := ApplyFiles(context.Background(), dir, files, Options{}); err != nil || res.Applied != 0 || res.Skipped != 4 {
		t.Errorf("second run: %+v, %v", res, err)
	}
}

// A log is decoded only when its turn comes: a damaged body late in the run stops the run
// there, after the earlier logs were applied.
func TestApplyFiles_DecodesEachLogInTurn(t *testing.T) {
	dir, files := offlineFixture(t)
	fi, err := os.Stat(files[3])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(files[3], fi.Size()-4); err != nil {
		t.Fatal(err)
	}
	res, err := ApplyFiles(context.Background(), dir, []string{files[3], files[2], files[1]}, Options{})
	if err == nil {
		t.Fatal("a truncated log was applied")
	}
	if res.Applied != 2 {
		t.Errorf("applied %d logs before the damaged one, want 2", res.Applied)
	}
	if st, _ := ReadState(dir, "vol"); st.Applied != 5 {
		t.Errorf("applied seq %d, want 5", st.Applied)
	}
}

// A log of a volume the directory does not hold is refused with its ID, before anything else.
func TestApplyFiles_UnknownVolume(t *testing.T) {
	_, files := offlineFixture(t)
	empty := t.TempDir()
	_, err := ApplyFiles(context.Background(), empty, files, Options{})
	if err == nil || !strings.Contains(err.Error(), "vol-1") || !strings.Contains(err.Error(), "seed it first") {
		t.Errorf("error %v, want one naming volume vol-1", err)
	}
}
