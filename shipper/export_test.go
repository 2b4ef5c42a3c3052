package shipper

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"drfs/changelog"
	"drfs/internal/logtest"
	"drfs/replica"
)

// TestShipper_ExportThenApply: change logs written to an export directory, applied in order on
// a replica that holds the volume at the export's starting seq, reproduce the source; the
// directory's state survives a reopen and refuses a log that would leave a gap.
func TestShipper_ExportThenApply(t *testing.T) {
	exp := filepath.Join(t.TempDir(), "export")
	tgt, err := OpenTarget("export://"+exp, "vol", nil, false, nil, logtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{Schedule: Schedule{Continuous: true}}, func(Target) Target { return tgt })
	for i := range 8 {
		e.write(t, int64(i)*4096, bytes.Repeat([]byte{byte(i + 1)}, 4096))
		if i%3 == 0 {
			e.sync(t)
		}
	}
	e.sync(t)
	last := uint64(e.vol.Journal().LastSeq())

	// The state file survives: a reopened export continues after the last log.
	again, err := openExportTarget(exp, "")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := again.State(context.Background())
	if st.VolumeID != e.vol.ID() || st.Applied != last || !st.Consistent {
		t.Fatalf("reopened export state %+v, want volume %s at %d", st, e.vol.ID(), last)
	}
	l := &changelog.Log{Header: changelog.Header{Kind: changelog.KindJournal, VolumeID: st.VolumeID, Generation: 1, FromSeq: last + 2, ToSeq: last + 2, Created: time.Now().UTC()}}
	b, _, err := changelog.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var ref *RefusedError
	if _, err := again.Send(context.Background(), b); !errors.As(err, &ref) || ref.Code != "gap" || ref.Applied != last {
		t.Fatalf("a log past a gap: %v, want a gap refusal at %d", err, last)
	}

	// The replica site applies the files in seq order (drfs apply).
	files, _ := filepath.Glob(filepath.Join(exp, "*"))
	var logs []*changelog.Log
	for _, f := range files {
		if filepath.Base(f) == exportState {
			continue
		}
		l, err := changelog.ReadFile(f, changelog.Limits{})
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		logs = append(logs, l)
	}
	sort.Slice(logs, func(i, j int) bool { return logs[i].FromSeq < logs[j].FromSeq })
	if len(logs) < 2 {
		t.Fatalf("%d change logs exported, want several", len(logs))
	}
	rep, err := replica.OpenVolume(t.TempDir(), "vol", replica.Options{Logger: logtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	for _, l := range logs {
		if _, err := rep.Apply(l); err != nil {
			t.Fatalf("apply %d-%d: %v", l.FromSeq, l.ToSeq, err)
		}
	}
	if got := rep.State().Applied; got != last {
		t.Fatalf("replica at seq %d after applying the export, want %d", got, last)
	}
	a, _ := os.ReadFile(filepath.Join(e.vol.Source(), e.path))
	r, err := os.ReadFile(filepath.Join(rep.DataDir(), e.path))
	if err != nil || !bytes.Equal(a, r) {
		t.Fatalf("replica differs from the source after applying the export (len %d vs %d, err %v)", len(a), len(r), err)
	}
}
