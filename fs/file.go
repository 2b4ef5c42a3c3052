package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"drfs/journal"
)

// File is an open file of a drfs mount. Reads and writes use pread/pwrite on the backing fd
// without a per-handle lock (QEMU issues many requests on one fd at once); locks, lseek,
// getattr, flush and release are go-fuse's loopback behaviour.
type File struct {
	*gofs.LoopbackFile
	node *Node
	fd   int
	ino  uint64
	sync bool // opened O_SYNC/O_DSYNC: every write is durable before it returns
}

var (
	_ = (gofs.FileReader)((*File)(nil))
	_ = (gofs.FileWriter)((*File)(nil))
	_ = (gofs.FileWritever)((*File)(nil))
	_ = (gofs.FileAllocater)((*File)(nil))
	_ = (gofs.FileFsyncer)((*File)(nil))
	_ = (gofs.FileSetattrer)((*File)(nil))
	_ = (gofs.FilePassthroughFder)((*File)(nil))
	_ = (gofs.FileIoctler)((*File)(nil))
)

func newFile(n *Node, lf *gofs.LoopbackFile, ino uint64, flags uint32) *File {
	fd, _ := lf.PassthroughFd()
	return &File{
		LoopbackFile: lf,
		node:         n,
		fd:           fd,
		ino:          ino,
		sync:         flags&(syscall.O_SYNC|syscall.O_DSYNC) != 0,
	}
}

// JournalPath implements volume.Target.
func (f *File) JournalPath() (string, bool) { return f.node.JournalPath() }

// PassthroughFd implements FilePassthroughFder by refusing: with kernel passthrough, writes
// would reach the backing file without drfs seeing them.
func (f *File) PassthroughFd() (int, bool) { return -1, false }

// Read implements FileReader.
func (f *File) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultFd(uintptr(f.fd), off, len(buf)), 0
}

// Write implements FileWriter: journal first, then the backing file.
func (f *File) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return f.write(data, off)
}

func (f *File) write(data []byte, off int64) (uint32, syscall.Errno) {
	n, err := f.node.vol.Write(f, f.ino, f.fd, data, off)
	if err != nil {
		if n > 0 {
			return uint32(n), 0
		}
		return 0, toErrno(err)
	}
	if f.sync {
		if err := f.node.vol.Sync(); err != nil {
			return 0, toErrno(err)
		}
	}
	return uint32(n), 0
}

// Writev implements FileWritever (go-fuse's loopback has one that would bypass the journal).
func (f *File) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	var total int
	for _, d := range data {
		total += len(d)
	}
	buf := make([]byte, 0, total)
	for _, d := range data {
		buf = append(buf, d...)
	}
	return f.write(buf, off)
}

// Fsync implements FileFsyncer.
func (f *File) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return toErrno(f.node.vol.Sync())
}

// Allocate implements FileAllocater: preallocation, punch hole and zero range are journaled
// with their mode. Collapse and insert range are refused, as the kernel's FUSE client already
// does: they shift every byte after the range, so replaying one twice would not be idempotent.
func (f *File) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if mode&^(unix.FALLOC_FL_KEEP_SIZE|unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
		return syscall.EOPNOTSUPP
	}
	return toErrno(f.node.vol.DataOp(f, f.ino, f.fd, func(path string) journal.Op {
		return journal.OpFallocate{Path: path, Ino: f.ino, Mode: mode, Off: int64(off), Len: int64(size)}
	}, int64(off), int64(size), func() error {
		return unix.Fallocate(f.fd, mode, int64(off), int64(size))
	}))
}

// Setattr implements FileSetattrer by routing to the node, which journals it.
func (f *File) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return f.node.Setattr(ctx, f, in, out)
}

// Ioctl implements FileIoctler by refusing: ioctls such as FICLONERANGE would change the
// backing file without a journal record.
func (f *File) Ioctl(ctx context.Context, cmd uint32, arg uint64, input []byte, output []byte) (int32, syscall.Errno) {
	return 0, syscall.ENOTTY
}
