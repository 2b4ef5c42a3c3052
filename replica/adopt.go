package replica

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"drfs/volume"
)

// Adopt makes the old primary described by d a replica volume under dir: its source becomes
// DIR/V/data (moved there, or linked when it is on another filesystem), and its state records
// the common seq and the diverged extents that the new primary will compare and overwrite.
func Adopt(dir string, d volume.Divergence, logf func(string, ...any)) (string, error) {
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
		logf("%s is on another filesystem than %s: linked it as %s", d.Source, dir, data)
	}
	v, err := OpenVolume(dir, d.Name, Options{Logf: logf})
	if err != nil {
		return "", err
	}
	defer v.Close()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st = State{
		VolumeID: d.ID, Name: d.Name, Generation: d.Generation, Applied: d.Acked,
		AppliedAt: time.Now().UTC(), Consistent: len(d.Extents) == 0, Role: "replica",
		History: d.History, Diverged: d.Extents, Reversed: true,
	}
	if len(d.Extents) > 0 && d.Extents[0].Path == "" {
		return "", errors.New("bad diverged extent")
	}
	return data, v.save()
}
