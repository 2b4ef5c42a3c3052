package wire

import (
	"bytes"
	"errors"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"
)

// Resync comparison granularity: whole files in DefaultBlockSize blocks, known changed extents
// in FineBlockSize blocks.
const (
	DefaultBlockSize = 64 << 10
	FineBlockSize    = 4 << 10
)

// Block sizes the network protocol hashes (describe's block): at least MinHashBlock, so a hash
// never stands for a guessable byte or two, and at most MaxHashBlock.
const (
	MinHashBlock = 4 << 10
	MaxHashBlock = 16 << 20
)

// TypeOf names the type of a stat mode.
func TypeOf(mode uint32) EntryType {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return TypeFile
	case unix.S_IFDIR:
		return TypeDir
	case unix.S_IFLNK:
		return TypeSymlink
	}
	return TypeOther
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
