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

// ErrNotRegular is returned for a data operation on anything but a regular file: the replica
// never opens a device node, a FIFO or a socket.
var ErrNotRegular = errors.New("replica: not a regular file")

// tree gives path-safe access to a replica's data directory: every path is resolved with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) below the root, so a change log can never reach
// outside it, even through a symlink planted in the tree.
//
// Durability rests on fsync of exactly what an apply or a rollback changed, never on syncfs
// (ignored by FUSE- and network-backed filesystems, and a flush of every other tenant's data on
// a shared one): the tree keeps a descriptor of every directory whose entries it changed and of
// every file or directory it wrote or changed the attributes of, and sync fsyncs them.
type tree struct {
	root string
	fd   int

	dirty fsutil.SyncSet // what changed since the last sync, and the state's trash directories
}

// maxDirty bounds the descriptors a tree keeps between syncs; past it they are synced early.
const maxDirty = 1024

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

func (t *tree) close() {
	t.dirty.Close()
	unix.Close(t.fd)
}

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
	fd, err := fsutil.OpenBeneath(t.fd, p, flags|unix.O_NOFOLLOW, mode)
	if err != nil {
		return -1, mapResolveErr(p, err)
	}
	return fd, nil
}

// openFile opens the regular file p for data with flags (O_RDONLY or O_RDWR, no O_CREAT). p
// is first opened O_PATH, which neither opens a device nor blocks on a FIFO, checked with
// fstat and only then reopened, so the object checked is the object opened.
func (t *tree) openFile(p string, flags int) (int, error) {
	pfd, err := t.open(p, unix.O_PATH, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	fd, err := reopenRegular(pfd, p, flags)
	if err == nil && flags&unix.O_ACCMODE != unix.O_RDONLY {
		if err = t.keep(fd); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, err
}

// reopenRegular opens the object of the O_PATH descriptor pfd with flags if it is a regular
// file, and fails with ErrNotRegular otherwise.
func reopenRegular(pfd int, p string, flags int) (int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, fmt.Errorf("%w: %s is a %s", ErrNotRegular, p, fileType(st.Mode))
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", pfd), flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("reopen %s: %w", p, err)
	}
	return fd, nil
}

// fileType names the type in mode for messages.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFBLK:
		return "block device node"
	case unix.S_IFCHR:
		return "character device node"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("file of type %o", mode&unix.S_IFMT)
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
	fd, err := fsutil.OpenBeneath(t.fd, dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, "", mapResolveErr(p, err)
	}
	return fd, name, nil
}

// keep remembers fd (by duplicating it) for the next sync; past maxDirty descriptors it syncs
// early.
func (t *tree) keep(fd int) error {
	if err := t.dirty.Add(fd); err != nil {
		return err
	}
	if t.dirty.Len() >= maxDirty {
		return t.sync()
	}
	return nil
}

// keepAt remembers the directory dfd and, if it is a regular file or a directory, the object
// name in it (a symlink, fifo or device cannot be fsynced; its directory covers it).
func (t *tree) keepAt(dfd int, name string) error {
	if err := t.keep(dfd); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil // removed or moved away: its directory is kept
	}
	if m := st.Mode & unix.S_IFMT; m != unix.S_IFREG && m != unix.S_IFDIR {
		return nil
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	return t.keep(fd)
}

// keepDir remembers a directory outside the tree (by path) for the next sync.
func (t *tree) keepDir(dir string) { t.dirty.AddDir(dir) }

// sync fsyncs everything kept since the last sync and forgets it.
func (t *tree) sync() error { return t.dirty.Sync(nil) }

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
	if err := fn(dfd, name); err != nil {
		return err
	}
	return t.keepAt(dfd, name)
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
	t.keepDir(filepath.Dir(dst))
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
	t.keepDir(filepath.Dir(src))
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
