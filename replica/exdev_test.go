package replica

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"drfs/internal/logtest"
	"drfs/journal"
)

// mustTmpfs mounts a fresh tmpfs (its own filesystem) and unmounts it at cleanup.
func mustTmpfs(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mount tmpfs on %s (the test needs root): %v", d, err)
	}
	t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
	return d
}

// A reversed old primary whose source is on another filesystem than the replica directory is
// linked in as DIR/V/data; logs that remove or replace objects (whose old version goes to the
// trash under DIR/V/state) must apply there, and roll back, all the same.
func TestReplica_AdoptedSourceOnAnotherFilesystem(t *testing.T) {
	dir, other := mustTmpfs(t), mustTmpfs(t)
	src := filepath.Join(other, "images")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "disk.img"), data('a', 100<<10), 0o644)
	os.WriteFile(filepath.Join(src, "d", "old.conf"), []byte("old"), 0o644)
	os.WriteFile(filepath.Join(src, "d", "new.conf"), []byte("new"), 0o644)
	os.Mkdir(filepath.Join(src, "empty"), 0o755)

	d := Adoption{ID: "vol-1", Name: "vol", Source: src, Generation: 1, Acked: 10}
	if _, err := Adopt(dir, d, logtest.Logger(t)); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	v, err := OpenVolume(dir, "vol", Options{PreparePrimary: prepareStub, KeepPoints: 100, Logger: logtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	before := snapshot(t, v.DataDir())
	mustApply(t, v, jlog(v,
		journal.OpUnlink{Path: "disk.img"},
		journal.OpRename{OldPath: "d/new.conf", NewPath: "d/old.conf"},
		journal.OpRmdir{Path: "empty"},
		journal.OpCreate{Path: "disk.img", Mode: 0o100644},
		journal.OpWrite{Path: "disk.img", Data: []byte("replaced")}))
	if b, _ := os.ReadFile(filepath.Join(src, "d", "old.conf")); string(b) != "new" {
		t.Fatalf("d/old.conf = %q after the rename", b)
	}
	after := snapshot(t, v.DataDir())
	mustApply(t, v, jlog(v, journal.OpUnlink{Path: "d/old.conf"}))
	// A log that fails half-way rolls back its copying moves too.
	if _, err := v.Apply(jlog(v, journal.OpUnlink{Path: "disk.img"}, journal.OpRmdir{Path: "d"}, journal.OpUnlink{Path: "missing"})); err == nil {
		t.Fatal("unlink of a missing file applied")
	}
	if err := v.RollbackTo(16); err != nil {
		t.Fatalf("RollbackTo(16): %v", err)
	}
	if got := snapshot(t, v.DataDir()); got != after {
		t.Fatalf("rolled back to 16:\n%s\nwant\n%s", got, after)
	}
	if err := v.RollbackTo(10); err != nil {
		t.Fatalf("RollbackTo(10): %v", err)
	}
	if got := snapshot(t, v.DataDir()); got != before {
		t.Fatalf("rolled back to 10:\n%s\nwant\n%s", got, before)
	}
	if ents, _ := os.ReadDir(src); len(ents) != 3 {
		t.Errorf("source holds %d entries after the rollback, want 3 (no restore leftovers)", len(ents))
	}
}
