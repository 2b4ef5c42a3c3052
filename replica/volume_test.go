package replica

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"syscall"

	"golang.org/x/sys/unix"

	"drfs/changelog"
	"drfs/internal/logtest"
	"drfs/journal"
	"drfs/wire"
)

// prepareStub stands in for the primary side's volume.Prepare: it creates the state
// directory with a record of what it was asked to hold.
func prepareStub(c wire.PrimaryState) error {
	if err := os.MkdirAll(filepath.Join(c.State, "meta"), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.State, "meta", "prepared.json"), b, 0o600)
}

func MustOpenVolume(tb testing.TB, dir string) *Volume {
	tb.Helper()
	v, err := OpenVolume(dir, "vol", Options{PreparePrimary: prepareStub, KeepPoints: 100, Logger: logtest.Logger(tb)})
	if err != nil {
		tb.Fatalf("OpenVolume: %v", err)
	}
	tb.Cleanup(func() { v.Close() })
	return v
}

// jlog builds the next journal change log of ops for v.
func jlog(v *Volume, ops ...journal.Op) *changelog.Log {
	from := v.State().Applied + 1
	return &changelog.Log{Header: changelog.Header{Kind: changelog.KindJournal, VolumeID: "vol-1", Generation: 1,
		FromSeq: from, ToSeq: from + uint64(len(ops)), Created: time.Now().UTC()}, Ops: ops}
}

func mustApply(t *testing.T, v *Volume, l *changelog.Log) {
	t.Helper()
	// Go through the wire format, as a real replica does.
	b, _, err := changelog.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := changelog.Unmarshal(b, changelog.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Apply(dl); err != nil {
		t.Fatalf("Apply %d-%d: %v", l.FromSeq, l.ToSeq, err)
	}
}

// snapshot describes a tree: type, mode, size, content hash, link target, and hard-link groups.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	inos := map[uint64]string{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %o %d", rel, st.Mode, st.Size)
		switch {
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
			if st.Nlink > 1 {
				if first, ok := inos[st.Ino]; ok {
					line += " link=" + first
				} else {
					inos[st.Ino] = rel
				}
			}
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		var buf [256]byte
		if n, err := unix.Lgetxattr(p, "user.x", buf[:]); err == nil {
			line += " xattr=" + string(buf[:n])
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func data(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// history applies a varied sequence of logs, returning the snapshot after each.
func history(t *testing.T, v *Volume) []string {
	snaps := []string{snapshot(t, v.DataDir())}
	logs := [][]journal.Op{
		{journal.OpMkdir{Path: "d", Mode: 0o40755}, journal.OpCreate{Path: "d/disk.img", Mode: 0o100644},
			journal.OpWrite{Path: "d/disk.img", Off: 0, Data: data('a', 300<<10)}, journal.OpCreate{Path: "keep", Mode: 0o100600},
			journal.OpWrite{Path: "keep", Off: 0, Data: []byte("keep me")}},
		{journal.OpWrite{Path: "d/disk.img", Off: 4096, Data: data('b', 8192)}, journal.OpWrite{Path: "d/disk.img", Off: 1 << 20, Data: data('c', 100)},
			journal.OpLink{OldPath: "keep", NewPath: "d/keep2"}, journal.OpSymlink{Path: "lnk", Target: "d/disk.img"},
			journal.OpSetxattr{Path: "keep", Name: "user.x", Value: []byte("v1")}},
		{journal.OpRename{OldPath: "d/disk.img", NewPath: "d/renamed.img"}, journal.OpTruncate{Path: "d/renamed.img", Size: 10000},
			journal.OpSetattr{Path: "keep", Valid: journal.SetMode, Mode: 0o644}, journal.OpSetxattr{Path: "keep", Name: "user.x", Value: []byte("v2")}},
		{journal.OpFallocate{Path: "d/renamed.img", Mode: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, Off: 4096, Len: 4096},
			journal.OpUnlink{Path: "keep"}, journal.OpCreate{Path: "keep", Mode: 0o100644}, journal.OpWrite{Path: "keep", Off: 0, Data: []byte("new")}},
		{journal.OpRename{OldPath: "keep", NewPath: "d/keep2"}, journal.OpRmdir{Path: "d"}},
	}
	for i, ops := range logs {
		if i == len(logs)-1 {
			// d is not empty: rename then rmdir of a non-empty dir must fail and roll back
			// the whole log.
			l := jlog(v, ops...)
			if _, err := v.Apply(l); !errors.Is(err, ErrApply) {
				t.Fatalf("apply of a failing log: %v, want ErrApply", err)
			}
			if got := snapshot(t, v.DataDir()); got != snaps[len(snaps)-1] {
				t.Fatalf("failed log left changes behind:\n%s\nwant\n%s", got, snaps[len(snaps)-1])
			}
			continue
		}
		mustApply(t, v, jlog(v, ops...))
		snaps = append(snaps, snapshot(t, v.DataDir()))
	}
	return snaps
}

func TestReplica_ApplyAndRollBackToEveryPoint(t *testing.T) {
	dir := t.TempDir()
	v := MustOpenVolume(t, dir)
	snaps := history(t, v)
	pts := v.Points()
	if len(pts) != len(snaps)-1 {
		t.Fatalf("%d points, want %d", len(pts), len(snaps)-1)
	}
	for i := len(pts) - 1; i >= 0; i-- {
		if err := v.RollbackTo(pts[i].From - 1); err != nil {
			t.Fatalf("RollbackTo(%d): %v", pts[i].From-1, err)
		}
		if got := snapshot(t, v.DataDir()); got != snaps[i] {
			t.Fatalf("after rollback to point %d:\n%s\nwant\n%s", pts[i].From-1, got, snaps[i])
		}
	}
	if v.State().Applied != 0 {
		t.Fatalf("applied = %d after rolling back everything", v.State().Applied)
	}
}

func TestReplica_DuplicateGapStaleOtherVolume(t *testing.T) {
	v := MustOpenVolume(t, t.TempDir())
	l1 := jlog(v, journal.OpCreate{Path: "f", Mode: 0o100644}, journal.OpWrite{Path: "f", Data: []byte("one")})
	mustApply(t, v, l1)
	before := snapshot(t, v.DataDir())
	// Re-delivery is a no-op.
	if a, err := v.Apply(l1); err != nil || a != l1.ToSeq {
		t.Fatalf("duplicate: applied=%d err=%v", a, err)
	}
	if snapshot(t, v.DataDir()) != before || len(v.Points()) != 1 {
		t.Fatal("a duplicate changed the replica")
	}
	gap := jlog(v, journal.OpWrite{Path: "f", Data: []byte("two")})
	gap.FromSeq += 5
	gap.ToSeq += 5
	if _, err := v.Apply(gap); !errors.Is(err, ErrGap) {
		t.Fatalf("gap: %v", err)
	}
	other := jlog(v, journal.OpWrite{Path: "f", Data: []byte("two")})
	other.VolumeID = "vol-2"
	if _, err := v.Apply(other); !errors.Is(err, ErrVolumeMismatch) {
		t.Fatalf("other volume: %v", err)
	}
	newer := jlog(v, journal.OpWrite{Path: "f", Data: []byte("gen2")})
	newer.Generation = 2
	mustApply(t, v, newer)
	stale := jlog(v, journal.OpWrite{Path: "f", Data: []byte("old")})
	if _, err := v.Apply(stale); !errors.Is(err, ErrStale) {
		t.Fatalf("stale generation: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(v.DataDir(), "f"))
	if string(b) != "gen2" {
		t.Fatalf("f = %q", b)
	}
}

// A crash in the middle of applying a log is rolled back when the replica restarts: it is
// always at a log boundary.
func TestReplica_CrashMidApplyRollsBack(t *testing.T) {
	dir := t.TempDir()
	v := MustOpenVolume(t, dir)
	snaps := history(t, v)
	for n := 1; n <= 6; n++ {
		v.crashAfter = n
		l := jlog(v, journal.OpWrite{Path: "d/renamed.img", Off: 0, Data: data('z', 64<<10)},
			journal.OpCreate{Path: "new", Mode: 0o100644}, journal.OpWrite{Path: "new", Data: data('n', 5000)},
			journal.OpRename{OldPath: "lnk", NewPath: "lnk2"}, journal.OpUnlink{Path: "d/keep2"},
			journal.OpTruncate{Path: "d/renamed.img", Size: 0}, journal.OpMkdir{Path: "e", Mode: 0o40700})
		if _, err := v.Apply(l); !errors.Is(err, errCrash) {
			t.Fatalf("crash after %d: %v", n, err)
		}
		v.Close()
		v = MustOpenVolume(t, dir)
		if got := snapshot(t, v.DataDir()); got != snaps[len(snaps)-1] {
			t.Fatalf("after a crash at op %d and restart:\n%s\nwant\n%s", n, got, snaps[len(snaps)-1])
		}
		if pts := v.Points(); v.State().Applying != nil || v.State().Applied != pts[len(pts)-1].To {
			t.Fatalf("state after recovery: %+v", v.State())
		}
	}
}

// A change log can never reach outside the data directory, even through a symlink that
// something planted inside it.
func TestReplica_RefusesEscape(t *testing.T) {
	v := MustOpenVolume(t, t.TempDir())
	outside := t.TempDir()
	mustApply(t, v, jlog(v, journal.OpSymlink{Path: "evil", Target: outside}, journal.OpMkdir{Path: "ok", Mode: 0o40755}))
	os.Symlink(outside, filepath.Join(v.DataDir(), "ok", "planted"))
	applied := v.State().Applied
	for _, ops := range [][]journal.Op{
		{journal.OpCreate{Path: "evil/x", Mode: 0o100644}},
		{journal.OpWrite{Path: "ok/planted/x", Data: []byte("pwned")}},
		{journal.OpMkdir{Path: "evil/d", Mode: 0o40755}},
		{journal.OpRename{OldPath: "ok", NewPath: "evil/ok"}},
		{journal.OpSetxattr{Path: "evil/x", Name: "user.x", Value: []byte("1")}},
	} {
		if _, err := v.Apply(jlog(v, ops...)); err == nil {
			t.Fatalf("%T through a symlink was applied", ops[0])
		}
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 0 {
		t.Fatalf("something was written outside the replica: %v", ents)
	}
	if v.State().Applied != applied {
		t.Fatal("a refused log advanced the applied seq")
	}
	if _, err := v.data.open("../x", unix.O_RDONLY, 0); !errors.Is(err, ErrEscape) {
		t.Fatalf("open ../x: %v", err)
	}
}

func TestReplica_KeepPointsPrunes(t *testing.T) {
	dir := t.TempDir()
	v, err := OpenVolume(dir, "vol", Options{PreparePrimary: prepareStub, KeepPoints: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	mustApply(t, v, jlog(v, journal.OpCreate{Path: "f", Mode: 0o100644}))
	for i := 0; i < 10; i++ {
		mustApply(t, v, jlog(v, journal.OpWrite{Path: "f", Off: int64(i), Data: []byte{byte(i)}}))
	}
	if n := len(v.Points()); n != 3 {
		t.Fatalf("%d points kept, want 3", n)
	}
	undo, _ := os.ReadDir(filepath.Join(dir, "vol", "state", "undo"))
	if len(undo) != 3 {
		t.Fatalf("%d undo files, want 3", len(undo))
	}
	if err := v.RollbackTo(1); err == nil {
		t.Fatal("rolled back to a pruned point")
	}
}

// Logs that overlap a resync (records appended while it walked the tree) may find their effect
// already there; up to the seq the primary names they are applied tolerantly, after it strictly.
func TestReplica_TolerantAfterResync(t *testing.T) {
	v := MustOpenVolume(t, t.TempDir())
	// The resync copied a tree in which a was already renamed to b and c already removed.
	rs := &changelog.Log{Header: changelog.Header{Kind: changelog.KindResync, VolumeID: "vol-1", Generation: 1, ToSeq: 7, Created: time.Now().UTC()},
		Ops: []journal.Op{journal.OpCreate{Path: "b", Mode: 0o100644}, journal.OpWrite{Path: "b", Data: []byte("data")}}}
	if err := v.MarkInconsistent("vol-1", 1); err != nil {
		t.Fatal(err)
	}
	mustApply(t, v, rs)
	if err := v.SyncComplete("vol-1", 1, 4, 6, true); err != nil {
		t.Fatal(err)
	}
	if st := v.State(); st.Consistent || st.Applied != 4 {
		t.Fatalf("after SyncComplete: %+v", st)
	}
	// Records 5..6 were appended during the walk: create+rename of a, removal of c.
	mustApply(t, v, &changelog.Log{Header: changelog.Header{Kind: changelog.KindJournal, VolumeID: "vol-1", Generation: 1, FromSeq: 5, ToSeq: 6, Created: time.Now().UTC()},
		Ops: []journal.Op{journal.OpWrite{Path: "a", Data: []byte("data")}, journal.OpRename{OldPath: "a", NewPath: "b"}, journal.OpUnlink{Path: "c"}}})
	if st := v.State(); !st.Consistent || st.Applied != 6 {
		t.Fatalf("past the tolerant window: %+v", st)
	}
	// From now on a missing object is divergence, not a race.
	if _, err := v.Apply(jlog(v, journal.OpUnlink{Path: "c"})); !errors.Is(err, ErrApply) {
		t.Fatalf("strict apply of an unlink of a missing file: %v", err)
	}
}
