package volume

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"drfs/internal/logtest"
	"drfs/journal"
)

// crash stops the volume the way kill -9 would: no checkpoint, the running marker stays.
func (v *Volume) crash() {
	v.closed.Store(true)
	v.cancel()
	v.wg.Wait()
	v.closeFiles()
}

type testDirs struct{ src, state string }

func newDirs(t *testing.T) testDirs {
	t.Helper()
	d := t.TempDir()
	td := testDirs{filepath.Join(d, "src"), filepath.Join(d, "state")}
	if err := os.Mkdir(td.src, 0o755); err != nil {
		t.Fatal(err)
	}
	return td
}

// MustOpenVolume opens a volume on dirs with background checkpoints off.
func MustOpenVolume(tb testing.TB, d testDirs) *Volume {
	tb.Helper()
	v, err := Open(Config{Source: d.src, State: d.state, CheckpointInterval: -1, SegmentSize: 1 << 20, Logger: logtest.Logger(tb)})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { v.Close() })
	return v
}

// testFile is an open backing file addressed by a fixed path, standing in for a FUSE handle.
type testFile struct {
	path string
	fd   int
	ino  uint64
}

func (f *testFile) JournalPath() (string, bool) { return f.path, true }

func createFile(t *testing.T, v *Volume, rel string) *testFile {
	t.Helper()
	unlock := v.LockNamespace()
	defer unlock()
	fd, err := unix.Open(filepath.Join(v.Source(), rel), unix.O_RDWR|unix.O_CREAT, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	var st unix.Stat_t
	unix.Fstat(fd, &st)
	if err := v.Record(journal.OpCreate{Path: rel, Mode: st.Mode, Ino: st.Ino}); err != nil {
		t.Fatal(err)
	}
	return &testFile{rel, fd, st.Ino}
}

func write(t *testing.T, v *Volume, f *testFile, data []byte, off int64) {
	t.Helper()
	if _, err := v.Write(f, f.ino, f.fd, data, off); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func fill(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func TestVolume_PowerLossReplay(t *testing.T) {
	d := newDirs(t)
	v := MustOpenVolume(t, d)
	f := createFile(t, v, "disk.img")
	write(t, v, f, fill('A', 1<<20), 0)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	checkpointed, err := os.ReadFile(filepath.Join(d.src, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}

	v = MustOpenVolume(t, d)
	fd, _ := unix.Open(filepath.Join(d.src, "disk.img"), unix.O_RDWR, 0)
	defer unix.Close(fd)
	f = &testFile{"disk.img", fd, f.ino}
	write(t, v, f, fill('B', 64<<10), 128<<10)
	write(t, v, f, fill('C', 4096), 2<<20) // extends the file
	if err := v.Sync(); err != nil {
		t.Fatal(err)
	}
	v.crash()

	// The source loses everything since the checkpoint, as if its page cache was never written.
	if err := os.WriteFile(filepath.Join(d.src, "disk.img"), checkpointed, 0o644); err != nil {
		t.Fatal(err)
	}
	v = MustOpenVolume(t, d)
	st := v.Start()
	if !st.Unclean || st.Replayed == 0 {
		t.Fatalf("start = %+v, want an unclean start with replayed records", st)
	}
	got, _ := os.ReadFile(filepath.Join(d.src, "disk.img"))
	want := append(fill('A', 1<<20), make([]byte, 1<<20)...)
	copy(want[128<<10:], fill('B', 64<<10))
	want = append(want, fill('C', 4096)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("after replay the file differs from what was fsynced (len %d, want %d)", len(got), len(want))
	}
	if st.HotRegions == 0 {
		t.Fatal("no hot regions marked after an unclean stop")
	}
	v.Close()
	v = MustOpenVolume(t, d)
	if v.Start().Unclean {
		t.Fatal("a clean stop after recovery is reported unclean")
	}
}

// A write whose bytes reached the source but whose journal record was lost (power loss before
// the journal sync) must be found: its region was recorded hot before the write.
func TestVolume_LostRecordIsMarkedHot(t *testing.T) {
	d := newDirs(t)
	v := MustOpenVolume(t, d)
	f := createFile(t, v, "vm.raw")
	pattern := []byte("lost-write-pattern-0123456789abcdef")
	const off = 9 << 20 // region 2 with 4 MiB regions
	write(t, v, f, pattern, off)
	v.crash()

	// Tear the last record: the write. The hot record before it was synced and survives.
	segs, _ := filepath.Glob(filepath.Join(d.state, "journal", "*.seg"))
	seg := segs[len(segs)-1]
	b, _ := os.ReadFile(seg)
	i := bytes.LastIndex(b, pattern)
	if i < 0 {
		t.Fatal("write record not found in the segment")
	}
	for k := i - 8; k < i+len(pattern); k++ {
		b[k] = 0
	}
	os.WriteFile(seg, b, 0o644)

	v = MustOpenVolume(t, d)
	if v.Start().Recovery.TornBytes == 0 {
		t.Fatalf("recovery = %+v, want a torn tail", v.Start().Recovery)
	}
	exts, _ := v.Meta().Resync()
	found := false
	for _, e := range exts {
		if e.Path == "vm.raw" && e.Off <= off && off+int64(len(pattern)) <= e.Off+e.Len {
			found = true
		}
	}
	if !found {
		t.Fatalf("resync extents %+v do not cover the lost write at %d", exts, off)
	}
}

func TestVolume_ChangedBehindBack(t *testing.T) {
	d := newDirs(t)
	v := MustOpenVolume(t, d)
	f := createFile(t, v, "a.img")
	write(t, v, f, fill('x', 8192), 0)
	createFile(t, v, "b.img")
	createFile(t, v, "c.img")
	v.Close()

	os.WriteFile(filepath.Join(d.src, "a.img"), fill('y', 100), 0o644)  // modified
	os.Remove(filepath.Join(d.src, "b.img"))                            // removed
	os.WriteFile(filepath.Join(d.src, "new.img"), fill('z', 10), 0o644) // created

	v = MustOpenVolume(t, d)
	exts, _ := v.Meta().Resync()
	got := map[string]string{}
	for _, e := range exts {
		got[e.Path] = e.Reason
	}
	for p, want := range map[string]string{"a.img": "changed", "b.img": "removed", "new.img": "created"} {
		if !strings.Contains(got[p], want) {
			t.Errorf("%s: reason %q, want %q", p, got[p], want)
		}
	}
	if _, ok := got["c.img"]; ok {
		t.Errorf("untouched c.img marked for resync: %+v", exts)
	}
}

func TestVolume_Refuses(t *testing.T) {
	d := newDirs(t)
	v := MustOpenVolume(t, d)
	other := newDirs(t)
	mnt := t.TempDir()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"state inside source", Config{Source: d.src, State: filepath.Join(d.src, "st")}, "inside the source"},
		{"mountpoint inside source", Config{Source: other.src, State: other.state, Mountpoint: filepath.Join(other.src)}, "mountpoint"},
		{"state inside mountpoint", Config{Source: other.src, State: filepath.Join(mnt, "st"), Mountpoint: mnt}, "inside the mountpoint"},
		{"missing source", Config{Source: filepath.Join(other.src, "nope"), State: other.state}, "no such file"},
		{"locked state", Config{Source: d.src, State: d.state}, "used by a running drfs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v, want an error containing %q", err, c.want)
			}
		})
	}
	v.Close()
	_, err := Open(Config{Source: other.src, State: d.state})
	if err == nil || !strings.Contains(err.Error(), "belongs to volume") {
		t.Fatalf("state of another volume: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.src, "st")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused Open created a state dir inside the source")
	}
}

func TestVolume_RefusesLostJournal(t *testing.T) {
	d := newDirs(t)
	v := MustOpenVolume(t, d)
	f := createFile(t, v, "disk.img")
	write(t, v, f, fill('A', 4096), 0)
	v.crash()
	os.RemoveAll(filepath.Join(d.state, "journal"))
	if _, err := Open(Config{Source: d.src, State: d.state, CheckpointInterval: -1}); err == nil || !strings.Contains(err.Error(), "did not stop cleanly") {
		t.Fatalf("Open with the journal gone after an unclean stop: %v", err)
	}
}

// TestVolume_RecoveryKeepsUnshippedRecords: after a crash, recovery's checkpoint must not
// release journal records the replica has not acknowledged yet: the shipper attaches only after
// Open, and a released record can never be shipped (replication stalled for good).
func TestVolume_RecoveryKeepsUnshippedRecords(t *testing.T) {
	d := newDirs(t)
	v := MustOpenVolume(t, d)
	if err := v.Meta().SetString(KeyReplica, "https://replica.example:9740"); err != nil {
		t.Fatal(err)
	}
	f := createFile(t, v, "disk")
	for i := range 300 { // several 1 MiB segments
		write(t, v, f, fill(byte(i), 8192), int64(i)*8192)
	}
	acked := uint64(v.Journal().LastSeq()) / 3
	if err := v.Meta().SetUint(KeyShipNext, acked); err != nil {
		t.Fatal(err)
	}
	if err := v.Sync(); err != nil {
		t.Fatal(err)
	}
	v.crash()
	v2 := MustOpenVolume(t, d)
	if first := uint64(v2.Journal().FirstSeq()); first > acked+1 {
		t.Fatalf("after recovery the journal starts at seq %d, but the replica acknowledged only %d: records %d..%d were released unshipped", first, acked, acked+1, first-1)
	}
	// A checkpoint of a volume whose owner installed a retention hook follows the hook.
	v2.SetRetention(func() journal.Seq { return 0 })
	if err := v2.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if first := uint64(v2.Journal().FirstSeq()); first <= acked+1 {
		t.Fatalf("with no consumer left the checkpoint kept the journal from seq %d", first)
	}
}
