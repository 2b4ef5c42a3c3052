package replica

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// DirStatus reports each volume from its state file alone, sorted, skipping what is not a
// volume; an empty directory has none.
func TestDirStatus(t *testing.T) {
	dir := promotable(t)
	os.MkdirAll(filepath.Join(dir, "not-a-volume"), 0o700)
	if out, err := DirStatus(t.TempDir(), time.Now()); err != nil || out != nil {
		t.Errorf("empty directory: %v, %v", out, err)
	}
	v, err := OpenVolume(dir, "vol", Options{}) // held open, as by drfs serve
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	st := v.State()
	out, err := DirStatus(dir, st.AppliedCreated.Add(90*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("%d volumes, want 1: %+v", len(out), out)
	}
	s := out[0]
	if s.Volume != "vol" || s.VolumeID != "vol-1" || s.Role != "replica" || s.AppliedSeq != st.Applied || !s.Consistent ||
		s.Points != 1 || s.OldestPointSeq != 0 || s.DataDir != (Layout{dir, "vol"}).Data() || s.LagSeconds != 90 {
		t.Errorf("status %+v", s)
	}
}
