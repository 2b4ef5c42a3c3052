package volume

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMeta_OpensWithEmptyLogFiles: a power loss between the creation of a memtable or value-log
// file and its first write leaves it empty; badger then refuses to open ("Create a new file"),
// which would keep the volume from mounting after the crash.
func TestMeta_OpensWithEmptyLogFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta")
	m, err := OpenMeta(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetCheckpoint(42); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"00099.mem", "000099.vlog"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m, err = OpenMeta(dir)
	if err != nil {
		t.Fatalf("OpenMeta with empty log files left by a crash: %v", err)
	}
	defer m.Close()
	if ck, err := m.Checkpoint(); err != nil || ck != 42 {
		t.Fatalf("checkpoint after reopening: %d, %v; want 42", ck, err)
	}
}
