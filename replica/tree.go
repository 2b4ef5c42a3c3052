package replica

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"drfs/internal/fsutil"
	"drfs/journal"
)

// ErrEscape is returned for a path that would leave the replica's data directory, through
// `..`, an absolute path or a symlink.
var ErrEscape = errors.New("replica: path escapes the volume root")

// tree gives path-safe access to a replica's data directory: every path is resolved with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) below the root, so a change log can never reach
// outside it, even through a symlink planted in the tree.
type tree struct {
	root string
	fd   int
}

func openTree(root string) (*tree, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open data dir %s: %w", root, err)
	}
	return &tree{root: root, fd: fd}, nil
}

func (t *tree) close() { unix.Close(t.fd) }

const resolveSafe = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

func checkPath(p string) error {
	if p == "." {
		return nil
	}
	if err := journal.ValidPath(p); err != nil {
		return fmt.Errorf("%w: %v", ErrEscape, err)
	}
	return nil
}

func mapResolveErr(p string, err error) error {
	if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("%w: %s", ErrEscape, p)
	}
	return err
}

// open opens p below the root with flags; the final component is never followed if it is a
// symlink.
func (t *tree) open(p string, flags int, mode uint32) (int, error) {
	if err := checkPath(p); err != nil {
		return -1, err
	}
	fd, err := unix.Openat2(t.fd, p, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW), Mode: uint64(mode), Resolve: resolveSafe})
	if err != nil {
		return -1, mapResolveErr(p, err)
	}
	return fd, nil
}

// parent opens the directory holding p and returns it with p's base name.
func (t *tree) parent(p string) (int, string, error) {
	if err := checkPath(p); err != nil {
		return -1, "", err
	}
	if p == "." {
		return -1, "", fmt.Errorf("%w: the root has no parent", ErrEscape)
	}
	dir, name := filepath.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	fd, err := unix.Openat2(t.fd, dir, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveSafe})
	if err != nil {
		return -1, "", mapResolveErr(p, err)
	}
	return fd, name, nil
}

// lstat returns the attributes of p without following a final symlink.
func (t *tree) lstat(p string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if p == "." {
		return st, unix.Fstat(t.fd, &st)
	}
	dfd, name, err := t.parent(p)
	if err != nil {
		return st, err
	}
	defer unix.Close(dfd)
	err = unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

func (t *tree) exists(p string) bool {
	_, err := t.lstat(p)
	return err == nil
}

// at runs fn with the parent directory of p and p's base name.
func (t *tree) at(p string, fn func(dfd int, name string) error) error {
	dfd, name, err := t.parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	return fn(dfd, name)
}

func (t *tree) rename(oldp, newp string, flags uint) error {
	return t.at(oldp, func(ofd int, oname string) error {
		return t.at(newp, func(nfd int, nname string) error {
			return unix.Renameat2(ofd, oname, nfd, nname, flags)
		})
	})
}

// moveOut moves p to dst, a path outside the tree (in the state's trash). When the tree is on
// another filesystem than the state (a reversed old primary's source linked in place), rename
// fails with EXDEV and p is copied instead: to dst.part, made durable, renamed to dst, and
// only then removed. A crash leaves either no dst (p untouched) or a complete dst.
func (t *tree) moveOut(p, dst string) error {
	return t.at(p, func(dfd int, name string) error {
		err := unix.Renameat2(dfd, name, unix.AT_FDCWD, dst, 0)
		if !errors.Is(err, unix.EXDEV) {
			return err
		}
		part := dst + ".part"
		if err := os.RemoveAll(part); err != nil {
			return err
		}
		if err := copyDurable(procPath(dfd, name), part); err != nil {
			return fmt.Errorf("copy %s to the trash on another filesystem: %w", p, err)
		}
		if err := os.Rename(part, dst); err != nil {
			return err
		}
		if err := fsutil.SyncDir(filepath.Dir(dst)); err != nil {
			return err
		}
		return os.RemoveAll(procPath(dfd, name))
	})
}

// moveIn moves src (outside the tree) back to p. Across filesystems it copies src to a
// temporary name beside p and renames that into place; src stays until the rollback removes
// the trash after its sync, so a crash here just copies again. An object still at p is the
// one a copying moveOut did not finish removing: the copy in src is the whole of it.
func (t *tree) moveIn(src, p string) error {
	return t.at(p, func(dfd int, name string) error {
		err := unix.Renameat2(unix.AT_FDCWD, src, dfd, name, unix.RENAME_NOREPLACE)
		if !errors.Is(err, unix.EXDEV) {
			return err
		}
		tmp := ".drfs-restore-" + name
		if len(tmp) > 255 {
			tmp = tmp[:255]
		}
		if err := os.RemoveAll(procPath(dfd, tmp)); err != nil {
			return err
		}
		if err := copyDurable(src, procPath(dfd, tmp)); err != nil {
			return fmt.Errorf("copy %s back from the trash on another filesystem: %w", p, err)
		}
		if err := os.RemoveAll(procPath(dfd, name)); err != nil {
			return err
		}
		if err := unix.Renameat2(dfd, tmp, dfd, name, unix.RENAME_NOREPLACE); err != nil {
			return err
		}
		return fsutil.SyncDir(procPath(dfd, "."))
	})
}

// copyDurable copies src to dst (which must not exist) and fsyncs every directory of the copy;
// copyTree already syncs file data.
func copyDurable(src, dst string) error {
	if err := copyTree(src, dst); err != nil {
		return err
	}
	return filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return fsutil.SyncDir(p)
	})
}

func fdFile(fd int) *os.File { return os.NewFile(uintptr(fd), "dir") }
