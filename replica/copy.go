package replica

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"drfs/wire"
)

// copyTree copies src (a file, symlink or directory tree) to dst, which must not exist,
// keeping modes, owners, times, extended attributes, symlinks, hard links within the tree and
// holes (sparse regions are not filled). It reads src as it is: a fuzzy copy if src changes.
func copyTree(src, dst string) error {
	links := map[uint64]string{}
	var dirs []string
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && p != src {
				return nil // removed while copying
			}
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		st := fi.Sys().(*unixStat)
		switch {
		case fi.IsDir():
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, rel)
			return nil
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if first, ok := links[st.Ino]; ok && st.Nlink > 1 {
				return os.Link(first, to)
			}
			if err := copyFile(p, to); err != nil {
				return fmt.Errorf("copy %s: %w", rel, err)
			}
			if st.Nlink > 1 {
				links[st.Ino] = to
			}
		default:
			if err := unix.Mknod(to, uint32(st.Mode), int(st.Rdev)); err != nil {
				return err
			}
		}
		return copyMeta(p, to, st)
	})
	if err != nil {
		return err
	}
	// Directory attributes last, deepest first, so adding entries does not change them.
	for i := len(dirs) - 1; i >= 0; i-- {
		var st syscall.Stat_t
		p := filepath.Join(src, dirs[i])
		if err := syscall.Lstat(p, &st); err != nil {
			continue
		}
		if err := copyMeta(p, filepath.Join(dst, dirs[i]), &st); err != nil {
			return err
		}
	}
	return nil
}

type unixStat = syscall.Stat_t

func copyMeta(from, to string, st *unixStat) error {
	if err := unix.Lchown(to, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, unix.EPERM) {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := os.Chmod(to, os.FileMode(st.Mode&0o777)|modeExtra(st.Mode)); err != nil {
			return err
		}
	}
	if x, err := wire.ReadXattrs(from); err == nil {
		for name, val := range x {
			unix.Lsetxattr(to, name, val, 0)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, to, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func modeExtra(m uint32) os.FileMode {
	var out os.FileMode
	if m&unix.S_ISUID != 0 {
		out |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		out |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		out |= os.ModeSticky
	}
	return out
}

// copyFile copies a regular file's data, skipping holes.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if err := out.Truncate(size); err != nil {
		return err
	}
	ifd := int(in.Fd())
	for pos := int64(0); pos < size; {
		data, err := unix.Seek(ifd, pos, unix.SEEK_DATA)
		if err != nil {
			break // the rest is a hole
		}
		hole, err := unix.Seek(ifd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, hole-data); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		pos = hole
	}
	return out.Sync()
}

// CopyTree copies src to dst (which must not exist) keeping modes, owners, times, extended
// attributes, symlinks, hard links and holes.
func CopyTree(src, dst string) error { return copyTree(src, dst) }
