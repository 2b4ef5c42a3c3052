package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"drfs/internal/logging"
	"drfs/wire"
)

// Adoption describes an old primary that becomes a replica (drfs reverse): what its side
// holds in common with the new primary and what diverged (the primary side's
// volume.Divergence).
type Adoption struct {
	ID, Name, Source string
	Generation       uint64
	History          []wire.GenRecord
	Acked            uint64        // the last seq the replica acknowledged: the common point
	Extents          []wire.Extent // changed on the old primary after Acked
}

// Adopt makes the old primary described by d a replica volume under dir: its source becomes
// DIR/V/data (moved there, or linked when it is on another filesystem), and its state records
// the common seq and the diverged extents that the new primary will compare and overwrite.
func Adopt(dir string, d Adoption, logger *slog.Logger) (string, error) {
	logger = logging.OrDiscard(logger)
	l := Layout{dir, d.Name}
	vdir := l.Root()
	if _, err := os.Stat(l.StateFile()); err == nil {
		return "", fmt.Errorf("%s already holds a replica of volume %s", vdir, d.Name)
	}
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return "", err
	}
	data := l.Data()
	if _, err := os.Lstat(data); err == nil {
		return "", fmt.Errorf("%s exists; move it away first", data)
	}
	if err := os.Rename(d.Source, data); err != nil {
		if !errors.Is(err, syscall.EXDEV) {
			return "", fmt.Errorf("move %s to %s: %w", d.Source, data, err)
		}
		// Another filesystem: keep the data where it is.
		if err := os.Symlink(d.Source, data); err != nil {
			return "", err
		}
		logger.Info("the old source is on another filesystem than the replica directory: linked it", "volume", d.Name, "source", d.Source, "dir", dir, "link", data)
	}
	v, err := OpenVolume(dir, d.Name, Options{Logger: logger})
	if err != nil {
		return "", err
	}
	defer v.Close()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st = wire.State{
		VolumeID: d.ID, Name: d.Name, Generation: d.Generation, Applied: d.Acked,
		AppliedAt: time.Now().UTC(), Consistent: len(d.Extents) == 0, Role: wire.RoleReplica,
		History: d.History, Diverged: d.Extents, Reversed: true,
	}
	if len(d.Extents) > 0 && d.Extents[0].Path == "" {
		return "", errors.New("bad diverged extent")
	}
	return data, v.save()
}
