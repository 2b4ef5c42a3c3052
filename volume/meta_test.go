package volume

import (
	"path/filepath"
	"testing"
)

// TestMeta_Keys pins the metadata key names and encodings documented in doc.go: they are the
// state directory's format, read by every later version and by `drfs status` offline.
func TestMeta_Keys(t *testing.T) {
	keys := map[string]string{
		keyVolumeID: "volume/id", keyVolumeName: "volume/name", keySource: "volume/source",
		keyCheckpoint: "volume/checkpoint", keyRunning: "volume/running",
		keyGeneration: "volume/generation", keyHistory: "volume/history", keyRole: "volume/role",
		keyHandOver: "volume/handover", KeyHandOverSeen: "volume/handover-seen",
		KeyShipNext: "ship/next", KeyReplica: "ship/replica", KeyShipSyncSeq: "ship/sync_seq",
		KeyShipSyncBusy: "ship/sync_busy", prefixFile: "file/", prefixResync: "resync/",
	}
	for got, want := range keys {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
	if len(keys) != 16 {
		t.Errorf("%d distinct keys, want 16: two constants share a name", len(keys))
	}
	if k := resyncKey(Extent{Path: "a/b", Off: 0x1234}); k != "resync/a/b\x000000000000001234" {
		t.Errorf("resyncKey = %q", k)
	}

	m, err := OpenMeta(filepath.Join(t.TempDir(), "meta"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.SetUint(KeyShipNext, 0x0102030405060708); err != nil {
		t.Fatal(err)
	}
	if b, _ := m.get(KeyShipNext); string(b) != "\x01\x02\x03\x04\x05\x06\x07\x08" {
		t.Errorf("integer stored as % x, want 8 bytes big-endian", b)
	}
	if err := m.SetCheckpoint(7); err != nil {
		t.Fatal(err)
	}
	if n, _ := m.Uint(keyCheckpoint); n != 7 {
		t.Errorf("checkpoint read back as %d", n)
	}
	if n, err := m.Uint(KeyShipSyncSeq); n != 0 || err != nil {
		t.Errorf("absent integer = %d, %v; want 0", n, err)
	}
}
