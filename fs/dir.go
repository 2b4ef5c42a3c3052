package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirHandle is an open directory. It reads through go-fuse's loopback stream, but fsync of a
// directory syncs the journal: a create, rename or link followed by fsync(dirfd) (the
// O_TMPFILE, linkat, fsync(dir) pattern) must be durable in the journal, not only in the
// source.
type dirHandle struct {
	ds  gofs.FileHandle
	vol interface{ Sync() error }
}

var (
	_ = (gofs.NodeOpendirHandler)((*Node)(nil))
	_ = (gofs.FileReaddirenter)((*dirHandle)(nil))
	_ = (gofs.FileSeekdirer)((*dirHandle)(nil))
	_ = (gofs.FileReleasedirer)((*dirHandle)(nil))
	_ = (gofs.FileFsyncdirer)((*dirHandle)(nil))
)

// OpendirHandle implements NodeOpendirHandler.
func (n *Node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	ds, fl, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{ds: ds, vol: n.vol}, fl, 0
}

// Readdirent implements FileReaddirenter.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if r, ok := d.ds.(gofs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	return nil, syscall.ENOTSUP
}

// Seekdir implements FileSeekdirer.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.ds.(gofs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

// Releasedir implements FileReleasedirer.
func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.ds.(gofs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

// Fsyncdir implements FileFsyncdirer: every change made so far, in this directory or any
// other, is durable once the journal is (namespace changes are durable in the source before
// they are journaled).
func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return toErrno(d.vol.Sync())
}
