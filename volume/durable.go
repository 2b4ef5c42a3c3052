package volume

import (
	"fmt"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"drfs/internal/fsutil"
	"drfs/journal"
)

// Durability rests on fsync and fdatasync of exactly the files and directories concerned,
// never on syncfs(2): a FUSE- or network-backed source ignores it, and on a shared filesystem
// it flushes every other tenant's data too. Two rules (journal/doc.go, "Replay"):
//
//   - A namespace or attribute op is durable in the source before its record is appended, and
//     its record is durable in the journal before the op returns. Replay therefore never
//     re-applies one: the source already holds every namespace op the journal holds.
//   - Data (write, truncate, fallocate) reaches the source without a sync; the checkpoint
//     fsyncs every file written since the previous checkpoint (the epoch's files) before
//     it records its seq, and only up to a seq the journal has made durable.

// metaDurable makes what op changed in the source durable: the directories whose entries it
// created or removed, and the object whose attributes it changed. The caller holds the
// namespace lock, so the tree cannot move under it.
func (v *Volume) metaDurable(op journal.Op) error {
	if t := op.Type(); !t.IsNamespace() && !t.IsAttr() {
		return nil // data ops are made durable by the checkpoint
	}
	dirs := op.Dirs()
	if p := op.Object(); p != "" {
		if err := v.syncObject(p, dirs); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		if err := v.syncPath(d, unix.O_RDONLY|unix.O_DIRECTORY); err != nil {
			return err
		}
	}
	return nil
}

func parentDir(p string) string { return filepath.Dir(p) }

// syncObject fsyncs a regular file or directory at p. Other objects (symlinks, fifos, device
// nodes) cannot be fsynced on Linux, and opening a device could have side effects: their
// parent directory is fsynced instead, which on journaling filesystems commits their inode too,
// unless it is one of dirs, which the caller fsyncs next.
func (v *Volume) syncObject(p string, dirs []string) error {
	fd, err := fsutil.OpenBeneath(v.srcFd, p, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return v.syncPath(p, unix.O_RDONLY|unix.O_NONBLOCK)
	case unix.S_IFDIR:
		return v.syncPath(p, unix.O_RDONLY|unix.O_DIRECTORY)
	}
	if slices.Contains(dirs, parentDir(p)) {
		return nil
	}
	return v.syncPath(parentDir(p), unix.O_RDONLY|unix.O_DIRECTORY)
}

func (v *Volume) syncPath(p string, flags int) error {
	fd, err := fsutil.OpenBeneath(v.srcFd, p, flags, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return nil
}
