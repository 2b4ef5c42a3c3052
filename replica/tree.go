package replica

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

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

// openFile opens the regular file p for data with flags (O_RDONLY or O_RDWR, no O_CREAT). p
// is first opened O_PATH, which neither opens a device nor blocks on a FIFO, checked with
// fstat and only then reopened, so the object checked is the object opened.
func (t *tree) openFile(p string, flags int) (int, error) {
	pfd, err := t.open(p, unix.O_PATH, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	return reopenRegular(pfd, p, flags)
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

// moveOut renames p to dst, a path outside the tree (in the state's trash, same filesystem).
func (t *tree) moveOut(p, dst string) error {
	return t.at(p, func(dfd int, name string) error {
		return unix.Renameat2(dfd, name, unix.AT_FDCWD, dst, 0)
	})
}

// moveIn renames src (outside the tree) back to p.
func (t *tree) moveIn(src, p string) error {
	return t.at(p, func(dfd int, name string) error {
		return unix.Renameat2(unix.AT_FDCWD, src, dfd, name, unix.RENAME_NOREPLACE)
	})
}

func fdFile(fd int) *os.File { return os.NewFile(uintptr(fd), "dir") }
