// Package seed carries a volume's initial copy on external media: Export writes a consistent
// copy of a mounted volume (a replica volume directory plus a manifest of block hashes) to a
// directory such as an external disk; Import installs it on the replica site, after checking
// the manifest. Replication then sends only what changed after the export.
package seed

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"drfs/changelog"
	"drfs/internal/fsutil"
	"drfs/journal"
	"drfs/replica"
	"drfs/volume"
	"drfs/wire"
)

// Names in a seed directory: SEED/manifest.json, SEED/tail.dcl (the records written during the
// copy, already applied) and SEED/VOLUME/{data,state} (a replica volume, consistent at the
// manifest's seq).
const (
	ManifestName = "manifest.json"
	TailName     = "tail.dcl"
)

// Manifest describes a seed: which volume, consistent at which seq, and the block hashes of
// every file (to detect damaged media at import).
type Manifest struct {
	VolumeID   string     `json:"volume_id"`
	Name       string     `json:"volume"`
	Generation uint64     `json:"generation"`
	Seq        uint64     `json:"seq"`
	Created    time.Time  `json:"created"`
	BlockSize  int        `json:"block_size"`
	Files      []FileHash `json:"files"`
}

// FileHash is one file of a seed.
type FileHash struct {
	Path   string   `json:"path"`
	Size   int64    `json:"size"`
	Hashes []uint64 `json:"hashes"`
}

// Export writes a consistent copy of vol to dir while the volume stays in use: the tree is
// copied (fuzzy), then the journal records appended meanwhile are applied to the copy, which
// is then the volume exactly as of the seq in the manifest.
func Export(vol *volume.Volume, dir string) (Manifest, error) {
	m := Manifest{VolumeID: vol.ID(), Name: vol.Name(), Generation: vol.Generation(), BlockSize: wire.DefaultBlockSize}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return m, fmt.Errorf("%s is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return m, err
	}
	// Pin before the barrier, so no checkpoint releases a record the copy will need.
	unpin := vol.Pin(vol.Journal().LastSeq())
	defer unpin()
	start := vol.Barrier()
	rv, err := replica.OpenVolume(dir, vol.Name(), replica.Options{})
	if err != nil {
		return m, err
	}
	defer rv.Close()
	if err := rv.MarkInconsistent(vol.ID(), m.Generation); err != nil {
		return m, err
	}
	if err := copyInto(vol.Source(), rv.DataDir()); err != nil {
		return m, fmt.Errorf("copy the volume: %w", err)
	}
	if testHookCopied != nil {
		testHookCopied()
	}
	end := vol.Barrier()
	if err := rv.SyncComplete(vol.ID(), m.Generation, uint64(start), uint64(end), true); err != nil {
		return m, err
	}
	if end > start {
		tail, err := readLog(vol, start+1, end)
		if err != nil {
			return m, err
		}
		if _, err := rv.Apply(tail); err != nil {
			return m, fmt.Errorf("apply the records written during the copy: %w", err)
		}
		// Keep them beside the copy too, in the change-log format.
		if p, _, err := changelog.WriteFile(dir, tail); err == nil {
			os.Rename(p, filepath.Join(dir, TailName))
		}
	}
	if st := rv.State(); !st.Consistent || st.Applied != uint64(end) {
		return m, fmt.Errorf("the copy is not consistent at seq %d (state %+v)", end, st)
	}
	m.Seq, m.Created = uint64(end), time.Now().UTC()
	if m.Files, err = hashTree(rv.DataDir(), m.BlockSize); err != nil {
		return m, err
	}
	// A volume that does not replicate yet continues from the seed: the journal keeps the
	// records after it for the replica that will be seeded.
	if r, _ := vol.Meta().String(volume.KeyReplica); r == "" {
		if err := vol.Meta().SetUint(volume.KeyShipNext, m.Seq); err != nil {
			return m, err
		}
	}
	b, _ := json.MarshalIndent(m, "", " ")
	if err := os.WriteFile(filepath.Join(dir, ManifestName), b, 0o600); err != nil {
		return m, err
	}
	return m, fsutil.SyncDir(dir)
}

// testHookCopied, when set, runs between the fuzzy copy and the closing barrier, where a test
// writes to the volume to get records into the tail deterministically.
var testHookCopied func()

// copyInto copies the entries of src into the existing directory dst.
func copyInto(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := replica.CopyTree(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func readLog(vol *volume.Volume, from, to journal.Seq) (*changelog.Log, error) {
	var ops []journal.Op
	err := vol.Journal().Read(from, to, func(r journal.Record) error {
		if r.Type == journal.RecHot {
			return nil
		}
		op, err := journal.DecodeOp(r.Type, r.Payload)
		if err != nil {
			return err
		}
		ops = append(ops, op)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Coalesce copies the data out of the journal's buffers.
	return &changelog.Log{Header: changelog.Header{Kind: changelog.KindJournal, VolumeID: vol.ID(), Generation: vol.Generation(),
		FromSeq: uint64(from), ToSeq: uint64(to), Created: time.Now().UTC()}, Ops: changelog.Coalesce(ops)}, nil
}

func hashTree(root string, block int) ([]FileHash, error) {
	var out []FileHash
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		h, err := wire.HashBlocks(fd, 0, fi.Size(), block)
		if err != nil {
			return err
		}
		out = append(out, FileHash{Path: rel, Size: fi.Size(), Hashes: h})
		return nil
	})
	return out, err
}

// Import checks the seed in seedDir against its manifest and installs it as volume
// replicaDir/NAME. It refuses a damaged seed and a replica directory that already holds the
// volume.
func Import(seedDir, replicaDir, volumeName string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(seedDir, ManifestName))
	if err != nil {
		return m, fmt.Errorf("%s is not a drfs seed: %w", seedDir, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("read the seed manifest: %w", err)
	}
	if volumeName != "" && volumeName != m.Name {
		return m, fmt.Errorf("%s is a seed of volume %q, not %q", seedDir, m.Name, volumeName)
	}
	src := filepath.Join(seedDir, m.Name)
	have, err := hashTree(filepath.Join(src, "data"), m.BlockSize)
	if err != nil {
		return m, err
	}
	want := map[string]FileHash{}
	for _, f := range m.Files {
		want[f.Path] = f
	}
	if len(have) != len(want) {
		return m, fmt.Errorf("the seed is damaged: %d files, the manifest lists %d", len(have), len(want))
	}
	for _, f := range have {
		w, ok := want[f.Path]
		if !ok || w.Size != f.Size || len(w.Hashes) != len(f.Hashes) {
			return m, fmt.Errorf("the seed is damaged: %s does not match the manifest", f.Path)
		}
		for i := range f.Hashes {
			if f.Hashes[i] != w.Hashes[i] {
				return m, fmt.Errorf("the seed is damaged: %s differs from the manifest at offset %d", f.Path, int64(i)*int64(m.BlockSize))
			}
		}
	}
	dst := filepath.Join(replicaDir, m.Name)
	if _, err := os.Stat(dst); err == nil {
		return m, fmt.Errorf("%s already exists: the replica directory already holds volume %s", dst, m.Name)
	}
	if err := os.MkdirAll(replicaDir, 0o755); err != nil {
		return m, err
	}
	if err := os.Rename(src, dst); err != nil {
		if !errors.Is(err, syscall.EXDEV) {
			return m, err
		}
		if err := replica.CopyTree(src, dst); err != nil {
			os.RemoveAll(dst)
			return m, fmt.Errorf("copy the seed: %w", err)
		}
	}
	return m, fsutil.SyncDir(replicaDir)
}
