package seed

import (
	"bytes"
	"drfs/internal/logtest"
	"encoding/json"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"drfs/changelog"
	"drfs/journal"
	"drfs/replica"
	"drfs/volume"
	"drfs/wire"
)

const testVolume = "vm"

// testVol is an open primary volume on a temporary source and state directory.
type testVol struct {
	*volume.Volume
	src string
}

// mustOpenVolume fills a new source directory with prepare and opens it as a volume with
// background checkpoints off.
func mustOpenVolume(tb testing.TB, prepare func(src string)) *testVol {
	tb.Helper()
	d := tb.TempDir()
	src := filepath.Join(d, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		tb.Fatal(err)
	}
	prepare(src)
	v, err := volume.Open(volume.Config{Source: src, State: filepath.Join(d, "state"), Name: testVolume,
		CheckpointInterval: -1, SegmentSize: 1 << 20, Logger: logtest.Logger(tb)})
	if err != nil {
		tb.Fatalf("volume.Open: %v", err)
	}
	tb.Cleanup(func() { v.Close() })
	return &testVol{Volume: v, src: v.Source()}
}

// testFile is an open backing file addressed by a fixed path, standing in for a FUSE handle.
type testFile struct {
	path string
	fd   int
	ino  uint64
}

func (f *testFile) JournalPath() (string, bool) { return f.path, true }

// openFile opens rel in the source, creating it (and journaling the create) if it is new.
func (v *testVol) openFile(tb testing.TB, rel string) *testFile {
	tb.Helper()
	unlock := v.LockNamespace()
	defer unlock()
	p := filepath.Join(v.src, rel)
	_, statErr := os.Stat(p)
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		tb.Fatal(err)
	}
	if os.IsNotExist(statErr) {
		if err := v.Record(journal.OpCreate{Path: rel, Mode: st.Mode, Ino: st.Ino}); err != nil {
			tb.Fatal(err)
		}
	}
	return &testFile{rel, fd, st.Ino}
}

// write writes data at off of rel through the volume (journal first, then the source).
func (v *testVol) write(tb testing.TB, rel string, data []byte, off int64) {
	tb.Helper()
	f := v.openFile(tb, rel)
	if _, err := v.Write(f, f.ino, f.fd, data, off); err != nil {
		tb.Fatalf("write %s: %v", rel, err)
	}
}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), 1})
	r.Read(b)
	return b
}

func mustWriteFile(tb testing.TB, p string, b []byte) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// diskSize spans two full blocks and part of a third.
const diskSize = 2*wire.DefaultBlockSize + 1000

func prepareSource(src string) {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "conf"), 0o755))
	must(os.WriteFile(filepath.Join(src, "disk.raw"), randBytes(1, diskSize), 0o644))
	must(os.WriteFile(filepath.Join(src, "conf", "vm.xml"), []byte("<vm/>\n"), 0o644))
	must(os.WriteFile(filepath.Join(src, "empty"), nil, 0o644))
}

// readTree returns the contents of the regular files under root by relative path.
func readTree(tb testing.TB, root string) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[rel] = b
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func requireTreesEqual(tb testing.TB, want, got string) {
	tb.Helper()
	w, g := readTree(tb, want), readTree(tb, got)
	for p, b := range w {
		if gb, ok := g[p]; !ok {
			tb.Errorf("%s is missing from %s", p, got)
		} else if !bytes.Equal(gb, b) {
			tb.Errorf("%s differs: %d bytes in %s, %d in %s", p, len(b), want, len(gb), got)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			tb.Errorf("%s is in %s but not in %s", p, got, want)
		}
	}
}

func readManifest(tb testing.TB, seedDir string) Manifest {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(seedDir, ManifestName))
	if err != nil {
		tb.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func mustExport(tb testing.TB, v *testVol) (Manifest, string) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "seed")
	m, err := Export(v.Volume, dir)
	if err != nil {
		tb.Fatalf("Export: %v", err)
	}
	return m, dir
}

func replicaState(tb testing.TB, dir string) wire.State {
	tb.Helper()
	rv, err := replica.OpenVolume(dir, testVolume, replica.Options{})
	if err != nil {
		tb.Fatalf("open the imported replica: %v", err)
	}
	defer rv.Close()
	return rv.State()
}

func TestSeed_ExportImport(t *testing.T) {
	v := mustOpenVolume(t, prepareSource)
	// Journaled before the export: the seed holds them.
	v.write(t, "disk.raw", randBytes(2, 5000), wire.DefaultBlockSize-100)
	v.write(t, "conf/new.xml", []byte("<new/>\n"), 0)

	m, seedDir := mustExport(t, v)

	if m.Seq == 0 || m.Seq != uint64(v.Journal().LastSeq()) {
		t.Errorf("manifest seq %d, want the journal's last seq %d", m.Seq, v.Journal().LastSeq())
	}
	if m.VolumeID != v.ID() || m.Name != testVolume || m.Generation != 1 || m.BlockSize != wire.DefaultBlockSize || m.Created.IsZero() {
		t.Errorf("manifest %+v, want volume %s (%s), generation 1, block size %d, a creation time",
			m, testVolume, v.ID(), wire.DefaultBlockSize)
	}
	if onDisk := readManifest(t, seedDir); !reflect.DeepEqual(onDisk, m) {
		t.Errorf("%s holds %+v, Export returned %+v", ManifestName, onDisk, m)
	}
	var paths []string
	for _, f := range m.Files {
		paths = append(paths, f.Path)
		fd, err := unix.Open(filepath.Join(v.src, f.Path), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		want, err := wire.HashBlocks(fd, 0, f.Size, m.BlockSize)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(v.src, f.Path))
		nblocks := int((f.Size + int64(m.BlockSize) - 1) / int64(m.BlockSize))
		if f.Size != fi.Size() || len(f.Hashes) != nblocks || !slices.Equal(f.Hashes, want) {
			t.Errorf("manifest entry %s: size %d, %d hashes; want size %d and the %d block hashes of the source",
				f.Path, f.Size, len(f.Hashes), fi.Size(), nblocks)
		}
	}
	slices.Sort(paths)
	if want := []string{"conf/new.xml", "conf/vm.xml", "disk.raw", "empty"}; !slices.Equal(paths, want) {
		t.Errorf("manifest lists %q, want %q", paths, want)
	}
	if _, err := os.Stat(filepath.Join(seedDir, TailName)); !os.IsNotExist(err) {
		t.Errorf("nothing was written during the copy, yet %s exists (%v)", TailName, err)
	}
	// The volume does not replicate yet: shipping will continue from the seed.
	if next, err := v.Meta().Uint(volume.KeyShipNext); err != nil || next != m.Seq {
		t.Errorf("%s = %d, %v; want the seed's seq %d", volume.KeyShipNext, next, err, m.Seq)
	}

	repDir := filepath.Join(t.TempDir(), "replica")
	im, err := Import(seedDir, repDir, testVolume)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if !reflect.DeepEqual(im, m) {
		t.Errorf("Import returned %+v, want the exported manifest %+v", im, m)
	}
	layout := replica.Layout{Dir: repDir, Volume: testVolume}
	requireTreesEqual(t, v.src, layout.Data())
	if st := replicaState(t, repDir); !st.Consistent || st.Applied != m.Seq || st.VolumeID != m.VolumeID || st.Generation != m.Generation {
		t.Errorf("imported replica state %+v, want consistent at seq %d of volume %s generation %d", st, m.Seq, m.VolumeID, m.Generation)
	}
	if _, err := os.Stat(filepath.Join(seedDir, testVolume)); !os.IsNotExist(err) {
		t.Errorf("the seed's volume directory is still there after a same-filesystem import (%v)", err)
	}
}

// Records written while the tree is copied are applied to the copy and kept in tail.dcl.
func TestSeed_ExportTail(t *testing.T) {
	v := mustOpenVolume(t, prepareSource)
	before := v.Journal().LastSeq()
	var during journal.Seq
	testHookCopied = func() {
		v.write(t, "disk.raw", randBytes(3, 3000), wire.DefaultBlockSize+10)
		v.write(t, "late.xml", []byte("<late/>\n"), 0)
		during = v.Journal().LastSeq()
	}
	t.Cleanup(func() { testHookCopied = nil })

	m, seedDir := mustExport(t, v)
	if m.Seq != uint64(during) {
		t.Errorf("manifest seq %d, want %d (the last record written during the copy)", m.Seq, during)
	}
	b, err := os.ReadFile(filepath.Join(seedDir, TailName))
	if err != nil {
		t.Fatalf("records were written during the copy but there is no %s: %v", TailName, err)
	}
	tail, err := changelog.Unmarshal(b, changelog.Limits{})
	if err != nil {
		t.Fatalf("decode %s: %v", TailName, err)
	}
	if tail.Kind != changelog.KindJournal || tail.VolumeID != v.ID() || tail.FromSeq != uint64(before)+1 || tail.ToSeq != m.Seq {
		t.Errorf("%s header %+v, want a journal log of %s covering seq %d..%d", TailName, tail.Header, v.ID(), before+1, m.Seq)
	}
	var got []string
	for _, op := range tail.Ops {
		got = append(got, op.Type().String()+" "+strings.Join(op.Paths(), ","))
	}
	for _, want := range []string{"write disk.raw", "create late.xml", "write late.xml"} {
		if !slices.Contains(got, want) {
			t.Errorf("%s holds %q, want among them %q", TailName, got, want)
		}
	}

	repDir := filepath.Join(t.TempDir(), "replica")
	if _, err := Import(seedDir, repDir, ""); err != nil {
		t.Fatalf("Import: %v", err)
	}
	// The copy was taken before the writes: only the applied tail brings them in.
	requireTreesEqual(t, v.src, replica.Layout{Dir: repDir, Volume: testVolume}.Data())
	if st := replicaState(t, repDir); !st.Consistent || st.Applied != m.Seq {
		t.Errorf("imported replica state %+v, want consistent at seq %d", st, m.Seq)
	}
}

func TestSeed_ExportRefusesNonEmptyDir(t *testing.T) {
	v := mustOpenVolume(t, prepareSource)
	dir := t.TempDir()
	mustWriteFile(t, filepath.Join(dir, "keep"), []byte("x"))
	if _, err := Export(v.Volume, dir); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("Export into a non-empty directory: %v, want a refusal", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("a refused export left %d entries in %s, want only the file that was there", len(ents), dir)
	}
}

// Import checks the seed against its manifest and installs nothing when it does not match.
func TestSeed_ImportRefuses(t *testing.T) {
	v := mustOpenVolume(t, prepareSource)
	m, good := mustExport(t, v)
	data := func(seedDir string) string { return filepath.Join(seedDir, testVolume, "data") }
	bs := int64(m.BlockSize)

	tests := []struct {
		name    string
		damage  func(t *testing.T, seedDir, repDir string)
		volume  string
		wantErr string
	}{
		{name: "byte flipped in the second block", damage: func(t *testing.T, seedDir, _ string) {
			p := filepath.Join(data(seedDir), "disk.raw")
			b, _ := os.ReadFile(p)
			b[bs+5] ^= 0xff
			mustWriteFile(t, p, b)
		}, wantErr: "disk.raw differs from the manifest at offset " + strconv.FormatInt(bs, 10)},
		{name: "byte flipped in the short last block", damage: func(t *testing.T, seedDir, _ string) {
			p := filepath.Join(data(seedDir), "disk.raw")
			b, _ := os.ReadFile(p)
			b[len(b)-1] ^= 0xff
			mustWriteFile(t, p, b)
		}, wantErr: "disk.raw differs from the manifest at offset " + strconv.FormatInt(2*bs, 10)},
		{name: "file truncated", damage: func(t *testing.T, seedDir, _ string) {
			if err := os.Truncate(filepath.Join(data(seedDir), "disk.raw"), bs); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "disk.raw does not match the manifest"},
		{name: "empty file grown", damage: func(t *testing.T, seedDir, _ string) {
			mustWriteFile(t, filepath.Join(data(seedDir), "empty"), []byte{0})
		}, wantErr: "empty does not match the manifest"},
		{name: "file missing", damage: func(t *testing.T, seedDir, _ string) {
			if err := os.Remove(filepath.Join(data(seedDir), "conf", "vm.xml")); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "the seed is damaged: 2 files, the manifest lists 3"},
		{name: "file added", damage: func(t *testing.T, seedDir, _ string) {
			mustWriteFile(t, filepath.Join(data(seedDir), "stray"), []byte("x"))
		}, wantErr: "the seed is damaged: 4 files, the manifest lists 3"},
		{name: "file renamed", damage: func(t *testing.T, seedDir, _ string) {
			if err := os.Rename(filepath.Join(data(seedDir), "empty"), filepath.Join(data(seedDir), "other")); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "other does not match the manifest"},
		{name: "manifest hash altered", damage: func(t *testing.T, seedDir, _ string) {
			mm := readManifest(t, seedDir)
			for i := range mm.Files {
				if mm.Files[i].Path == "disk.raw" {
					mm.Files[i].Hashes[0]++
				}
			}
			b, _ := json.Marshal(mm)
			mustWriteFile(t, filepath.Join(seedDir, ManifestName), b)
		}, wantErr: "disk.raw differs from the manifest at offset 0"},
		{name: "another volume", volume: "other",
			wantErr: `is a seed of volume "vm", not "other"`},
		{name: "no manifest", damage: func(t *testing.T, seedDir, _ string) {
			if err := os.Remove(filepath.Join(seedDir, ManifestName)); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "is not a drfs seed"},
		{name: "manifest not JSON", damage: func(t *testing.T, seedDir, _ string) {
			mustWriteFile(t, filepath.Join(seedDir, ManifestName), []byte("{\"volume\": "))
		}, wantErr: "read the seed manifest"},
		{name: "replica directory already holds the volume", damage: func(t *testing.T, _, repDir string) {
			mustWriteFile(t, filepath.Join(repDir, testVolume, "keep"), []byte("x"))
		}, wantErr: "already holds volume vm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seedDir := filepath.Join(t.TempDir(), "seed")
			if err := replica.CopyTree(good, seedDir); err != nil {
				t.Fatal(err)
			}
			repDir := filepath.Join(t.TempDir(), "replica")
			if tt.damage != nil {
				tt.damage(t, seedDir, repDir)
			}
			_, err := Import(seedDir, repDir, tt.volume)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Import: %v, want an error containing %q", err, tt.wantErr)
			}
			// Nothing was moved: the seed is whole, the replica directory unchanged.
			if _, err := os.Stat(data(seedDir)); err != nil {
				t.Errorf("the refused seed lost its volume directory: %v", err)
			}
			if ents, _ := os.ReadDir(filepath.Join(repDir, testVolume)); len(ents) > 1 {
				t.Errorf("a refused import wrote into %s", filepath.Join(repDir, testVolume))
			}
		})
	}

	// The untouched seed imports.
	if _, err := Import(good, filepath.Join(t.TempDir(), "replica"), testVolume); err != nil {
		t.Errorf("Import of the undamaged seed: %v", err)
	}
}
