package replica

import (
	"errors"
	"io"

	"golang.org/x/sys/unix"

	"drfs/wire"
)

// Describe returns the Entry of p in the volume's tree; with blockSize > 0, files carry block
// hashes of [off, off+n) (n < 0: to the end).
func (v *Volume) Describe(p string, off, n int64, blockSize int) (wire.Entry, error) {
	e := wire.Entry{Off: off}
	st, err := v.data.lstat(p)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return e, nil
	}
	if err != nil {
		return e, err
	}
	e.Exists, e.Type, e.Size, e.Mode, e.Uid, e.Gid, e.Ino, e.Nlink = true, wire.TypeOf(st.Mode), st.Size, st.Mode, st.Uid, st.Gid, st.Ino, uint64(st.Nlink)
	if e.Type == wire.TypeFile || e.Type == wire.TypeDir {
		err = v.data.at(p, func(dfd int, name string) error {
			e.Xattrs, err = wire.ReadXattrs(procPath(dfd, name))
			return err
		})
		if p == "." {
			e.Xattrs, err = wire.ReadXattrs(v.data.root)
		}
		if err != nil {
			return e, err
		}
	}
	switch e.Type {
	case wire.TypeSymlink:
		err = v.data.at(p, func(dfd int, name string) error {
			buf := make([]byte, 4096)
			k, err := unix.Readlinkat(dfd, name, buf)
			e.Target = string(buf[:max(k, 0)])
			return err
		})
	case wire.TypeFile:
		if blockSize > 0 {
			var fd int
			if fd, err = v.data.openFile(p, unix.O_RDONLY); err != nil {
				return e, err
			}
			defer unix.Close(fd)
			if n < 0 {
				n = max(st.Size-off, 0)
			}
			e.Hashes, err = wire.HashBlocks(fd, off, n, blockSize)
		}
	}
	return e, err
}

// List returns the entries of directory p (name, type, ino) in the volume's tree.
func (v *Volume) List(p string) ([]wire.Entry, error) {
	fd, err := v.data.open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if p == "." {
		fd, err = unix.Dup(v.data.fd)
	}
	if err != nil {
		return nil, err
	}
	f := fdFile(fd)
	defer f.Close()
	var out []wire.Entry
	for {
		names, err := f.Readdirnames(256)
		for _, name := range names {
			var st unix.Stat_t
			if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
				continue
			}
			out = append(out, wire.Entry{Name: name, Exists: true, Type: wire.TypeOf(st.Mode), Ino: st.Ino, Nlink: uint64(st.Nlink), Size: st.Size})
		}
		if err == io.EOF || len(names) == 0 {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}
