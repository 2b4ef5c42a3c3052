package fs

import (
	"context"
	"fmt"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"drfs/journal"
)

// OnForget closes the descriptor kept for an O_TMPFILE file.
func (n *Node) OnForget() {
	n.tmpMu.Lock()
	defer n.tmpMu.Unlock()
	if n.tmpFd >= 0 {
		unix.Close(n.tmpFd)
		n.tmpFd = -1
	}
}

// Tmpfile implements NodeTmpfiler. An O_TMPFILE file has no name: nobody else can see it, so
// its writes are not journaled until it is linked into the tree (see Link), which journals its
// creation and its whole content at once.
func (n *Node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if n.vol.Writable() != nil {
		return nil, nil, 0, syscall.EROFS
	}
	ch, fh, _, errno := n.LoopbackNode.Tmpfile(ctx, uint32(backingFlags(flags)), mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	lf := fh.(*gofs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		lf.Release(ctx)
		return nil, nil, 0, gofs.ToErrno(err)
	}
	node := ch.Operations().(*Node)
	// Keep a descriptor to link the file by later: LINK does not carry one.
	dup, err := unix.Dup(fd)
	if err != nil {
		lf.Release(ctx)
		return nil, nil, 0, gofs.ToErrno(err)
	}
	node.tmpMu.Lock()
	node.tmpFd = dup
	node.tmpMu.Unlock()
	return ch, newFile(node, lf, st.Ino, flags), 0, 0
}

// linkTmpfile links an O_TMPFILE file at p and journals its creation and content.
func (n *Node) linkTmpfile(ctx context.Context, target *Node, name, p string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	target.tmpMu.Lock()
	fd := target.tmpFd
	target.tmpMu.Unlock()
	if fd < 0 {
		return nil, syscall.EXDEV
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, gofs.ToErrno(err)
	}
	// The content reaches the tree with the link: mark it hot first, so a crash before its
	// records are durable resyncs it.
	if st.Size > 0 {
		if err := n.vol.MarkHot(st.Ino, fd, 0, st.Size); err != nil {
			return nil, toErrno(err)
		}
	}
	err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, n.abs(p), unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	if errno := n.record(journal.OpCreate{Path: p, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid, Ino: st.Ino}); errno != 0 {
		return nil, errno
	}
	if errno := n.journalContent(fd, p, st.Ino, st.Size); errno != 0 {
		return nil, errno
	}
	if err := n.vol.Sync(); err != nil {
		return nil, toErrno(err)
	}
	out.FromStat(&st)
	ch := n.NewInode(ctx, target, target.StableAttr())
	return ch, 0
}

// journalContent journals the data of a file that reached the tree without its writes being
// journaled (a linked O_TMPFILE), skipping holes.
func (n *Node) journalContent(fd int, p string, ino uint64, size int64) syscall.Errno {
	buf := make([]byte, 1<<20)
	for pos := int64(0); pos < size; {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if err != nil {
			break // no more data: the rest is a hole
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		for q := data; q < hole; {
			r, err := unix.Pread(fd, buf[:min(int64(len(buf)), hole-q)], q)
			if err != nil {
				return gofs.ToErrno(err)
			}
			if r == 0 {
				break
			}
			if errno := n.record(journal.OpWrite{Path: p, Ino: ino, Off: q, Data: buf[:r]}); errno != 0 {
				return errno
			}
			q += int64(r)
		}
		pos = hole
	}
	return n.record(journal.OpTruncate{Path: p, Ino: ino, Size: size})
}

// CopyFileRange implements NodeCopyFileRanger. The copied bytes are read and journaled as a
// write to the destination, so replay and replication never depend on the source range
// staying unchanged.
func (n *Node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	in, ok1 := fhIn.(*File)
	dst, ok2 := fhOut.(*File)
	if !ok1 || !ok2 {
		return 0, syscall.EXDEV
	}
	if flags != 0 {
		return 0, syscall.EINVAL
	}
	const chunk = 1 << 20
	buf := make([]byte, min(length, chunk))
	var done uint64
	for done < length {
		want := min(length-done, chunk)
		r, err := unix.Pread(in.fd, buf[:want], int64(offIn+done))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if done > 0 {
				break
			}
			return 0, gofs.ToErrno(err)
		}
		if r == 0 {
			break
		}
		w, errno := dst.write(buf[:r], int64(offOut+done))
		done += uint64(w)
		if errno != 0 {
			if done > 0 {
				break
			}
			return 0, errno
		}
		if r < int(want) {
			break
		}
	}
	if done > 1<<31 {
		done = 1 << 31
	}
	return uint32(done), 0
}
