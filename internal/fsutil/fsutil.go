// Package fsutil holds the small durability primitives every drfs package needs.
package fsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SyncDir fsyncs a directory, so the creations, renames and removals in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// WriteFileAtomic replaces path with b durably: a reader (or a restart after a crash) sees
// either the old content or the new, never a mix.
func WriteFileAtomic(path string, b []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// ResolveBeneath is the openat2 resolve mode for every path taken from a journal record, a
// change log or a peer: the path stays below the directory it is resolved from and no symlink
// (nor /proc magic link) is followed anywhere along it.
const ResolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// OpenBeneath opens p relative to the directory dirfd with openat2(ResolveBeneath), adding
// O_CLOEXEC. A final symlink is refused like any other (ELOOP) unless flags hold O_PATH and
// O_NOFOLLOW, which open the link itself. p "." opens dirfd's directory again.
func OpenBeneath(dirfd int, p string, flags int, mode uint32) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: ResolveBeneath}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(dirfd, p, how)
		// EAGAIN: a rename elsewhere on the system raced the resolution; it is safe to retry.
		if (err == unix.EINTR || err == unix.EAGAIN) && try < 100 {
			continue
		}
		return fd, err
	}
}

// Locked reports whether another process holds an flock(2) on the file at path (a state
// directory's LOCK while its volume is open). A missing file is not locked.
func Locked(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}
