package replica

import (
	"bytes"
	"errors"
	"io"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"
)

// Resync comparison granularity: whole files in DefaultBlockSize blocks, known changed extents
// in FineBlockSize blocks.
const (
	DefaultBlockSize = 64 << 10
	FineBlockSize    = 4 << 10
)

// Entry describes one object for resync: what the other side needs to decide what to send.
type Entry struct {
	Name   string            `json:"name,omitempty"`
	Exists bool              `json:"exists"`
	Type   string            `json:"type,omitempty"` // file, dir, symlink, other
	Size   int64             `json:"size,omitempty"`
	Mode   uint32            `json:"mode,omitempty"`
	Uid    uint32            `json:"uid,omitempty"`
	Gid    uint32            `json:"gid,omitempty"`
	Ino    uint64            `json:"ino,omitempty"`
	Nlink  uint64            `json:"nlink,omitempty"`
	Target string            `json:"target,omitempty"` // symlink target
	Hashes []uint64          `json:"hashes,omitempty"` // per block of BlockSize from Off, for files
	Xattrs map[string][]byte `json:"xattrs,omitempty"`
	Off    int64             `json:"off,omitempty"`
}

// TypeOf names the type of a stat mode.
func TypeOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	}
	return "other"
}

// HashBlocks returns the xxhash64 of each blockSize block of fd in [off, off+n), reading
// holes as zeros (a hole and a block of zeros hash the same). A short last block is hashed as
// it is; blocks past EOF are not returned.
func HashBlocks(fd int, off, n int64, blockSize int) ([]uint64, error) {
	buf := make([]byte, blockSize)
	var out []uint64
	for pos := off; pos < off+n; pos += int64(blockSize) {
		want := min(int64(blockSize), off+n-pos)
		got := 0
		for got < int(want) {
			r, err := unix.Pread(fd, buf[got:want], pos+int64(got))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return nil, err
			}
			if r == 0 {
				break
			}
			got += r
		}
		if got == 0 {
			break
		}
		out = append(out, xxhash.Sum64(buf[:got]))
		if got < int(want) {
			break
		}
	}
	return out, nil
}

// Describe returns the Entry of p in the volume's tree; with blockSize > 0, files carry block
// hashes of [off, off+n) (n < 0: to the end).
func (v *Volume) Describe(p string, off, n int64, blockSize int) (Entry, error) {
	e := Entry{Off: off}
	st, err := v.data.lstat(p)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return e, nil
	}
	if err != nil {
		return e, err
	}
	e.Exists, e.Type, e.Size, e.Mode, e.Uid, e.Gid, e.Ino, e.Nlink = true, TypeOf(st.Mode), st.Size, st.Mode, st.Uid, st.Gid, st.Ino, uint64(st.Nlink)
	if e.Type == "file" || e.Type == "dir" {
		err = v.data.at(p, func(dfd int, name string) error {
			e.Xattrs, err = ReadXattrs(procPath(dfd, name))
			return err
		})
		if p == "." {
			e.Xattrs, err = ReadXattrs(v.data.root)
		}
		if err != nil {
			return e, err
		}
	}
	switch e.Type {
	case "symlink":
		err = v.data.at(p, func(dfd int, name string) error {
			buf := make([]byte, 4096)
			k, err := unix.Readlinkat(dfd, name, buf)
			e.Target = string(buf[:max(k, 0)])
			return err
		})
	case "file":
		if blockSize > 0 {
			var fd int
			if fd, err = v.data.openFile(p, unix.O_RDONLY); err != nil {
				return e, err
			}
			defer unix.Close(fd)
			if n < 0 {
				n = max(st.Size-off, 0)
			}
			e.Hashes, err = HashBlocks(fd, off, n, blockSize)
		}
	}
	return e, err
}

// List returns the entries of directory p (name, type, ino) in the volume's tree.
func (v *Volume) List(p string) ([]Entry, error) {
	fd, err := v.data.open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if p == "." {
		fd, err = unix.Dup(v.data.fd)
	}
	if err != nil {
		return nil, err
	}
	f := fdFile(fd)
	defer f.Close()
	var out []Entry
	for {
		names, err := f.Readdirnames(256)
		for _, name := range names {
			var st unix.Stat_t
			if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
				continue
			}
			out = append(out, Entry{Name: name, Exists: true, Type: TypeOf(st.Mode), Ino: st.Ino, Nlink: uint64(st.Nlink), Size: st.Size})
		}
		if err == io.EOF || len(names) == 0 {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// ZeroBlockHash is the hash of a block of n zero bytes (what a hole hashes to).
func ZeroBlockHash(n int) uint64 { return xxhash.Sum64(make([]byte, n)) }

// ReadXattrs returns the extended attributes of path (not following a final symlink) that
// replication carries: all but security.selinux, which belongs to each host's policy.
func ReadXattrs(path string) (map[string][]byte, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		return nil, err
	}
	var out map[string][]byte
	for _, name := range bytes.Split(buf[:n], []byte{0}) {
		if len(name) == 0 || string(name) == "security.selinux" {
			continue
		}
		val := make([]byte, 64<<10)
		k, err := unix.Lgetxattr(path, string(name), val)
		if err != nil {
			continue
		}
		if out == nil {
			out = map[string][]byte{}
		}
		out[string(name)] = val[:k]
	}
	return out, nil
}
