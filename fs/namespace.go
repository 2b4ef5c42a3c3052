package fs

import (
	"context"
	"runtime"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"drfs/journal"
)

// Create implements NodeCreater.
func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	unlock := n.vol.LockNamespace()
	defer unlock()
	if n.vol.Writable() != nil {
		return nil, nil, 0, syscall.EROFS
	}
	p, ok := n.child(name)
	if !ok {
		return nil, nil, 0, syscall.ENOENT
	}
	ch, fh, _, errno := n.LoopbackNode.Create(ctx, name, uint32(backingFlags(flags)), mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	lf := fh.(*gofs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		lf.Release(ctx)
		return nil, nil, 0, gofs.ToErrno(err)
	}
	if errno := n.record(journal.OpCreate{Path: p, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid, Ino: st.Ino}); errno != 0 {
		lf.Release(ctx)
		return nil, nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		if errno := n.record(journal.OpTruncate{Path: p, Ino: st.Ino, Size: 0}); errno != 0 {
			lf.Release(ctx)
			return nil, nil, 0, errno
		}
	}
	return ch, newFile(ch.Operations().(*Node), lf, st.Ino, flags), 0, 0
}

// Mkdir implements NodeMkdirer.
func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	unlock := n.vol.LockNamespace()
	defer unlock()
	if n.vol.Writable() != nil {
		return nil, syscall.EROFS
	}
	p, ok := n.child(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	ch, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if errno != 0 {
		return nil, errno
	}
	return ch, n.record(journal.OpMkdir{Path: p, Mode: out.Mode, Uid: out.Uid, Gid: out.Gid, Ino: out.Ino})
}

// Mknod implements NodeMknoder for FIFOs and sockets; device nodes are refused with EPERM.
func (n *Node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	unlock := n.vol.LockNamespace()
	defer unlock()
	if n.vol.Writable() != nil {
		return nil, syscall.EROFS
	}
	if t := mode & syscall.S_IFMT; t == syscall.S_IFBLK || t == syscall.S_IFCHR {
		// The replica never creates a device node (it would open it for data): one in the
		// volume would stall replication for good.
		return nil, syscall.EPERM
	}
	p, ok := n.child(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	ch, errno := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	if errno != 0 {
		return nil, errno
	}
	return ch, n.record(journal.OpMknod{Path: p, Mode: out.Mode, Uid: out.Uid, Gid: out.Gid, Rdev: uint64(rdev), Ino: out.Ino})
}

// Symlink implements NodeSymlinker.
func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	unlock := n.vol.LockNamespace()
	defer unlock()
	if n.vol.Writable() != nil {
		return nil, syscall.EROFS
	}
	p, ok := n.child(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	ch, errno := n.LoopbackNode.Symlink(ctx, target, name, out)
	if errno != 0 {
		return nil, errno
	}
	return ch, n.record(journal.OpSymlink{Path: p, Target: target, Uid: out.Uid, Gid: out.Gid, Ino: out.Ino})
}

// Link implements NodeLinker.
func (n *Node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	unlock := n.vol.LockNamespace()
	defer unlock()
	if n.vol.Writable() != nil {
		return nil, syscall.EROFS
	}
	p, ok := n.child(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	old, ok := relPath(target.EmbeddedInode())
	if !ok {
		if tn, isNode := target.(*Node); isNode {
			return n.linkTmpfile(ctx, tn, name, p, out)
		}
		return nil, syscall.EXDEV
	}
	ch, errno := n.LoopbackNode.Link(ctx, target, name, out)
	if errno != 0 {
		return nil, errno
	}
	return ch, n.record(journal.OpLink{OldPath: old, NewPath: p, Ino: out.Ino})
}

// Unlink implements NodeUnlinker.
func (n *Node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, func() syscall.Errno { return n.LoopbackNode.Unlink(ctx, name) },
		func(p string, ino uint64) journal.Op { return journal.OpUnlink{Path: p, Ino: ino} })
}

// Rmdir implements NodeRmdirer.
func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, func() syscall.Errno { return n.LoopbackNode.Rmdir(ctx, name) },
		func(p string, ino uint64) journal.Op { return journal.OpRmdir{Path: p, Ino: ino} })
}

// remove runs rm (an unlink or rmdir of name) under the namespace lock and journals the op mk
// builds for the child's path and inode.
func (n *Node) remove(name string, rm func() syscall.Errno, mk func(p string, ino uint64) journal.Op) syscall.Errno {
	unlock := n.vol.LockNamespace()
	defer unlock()
	if n.vol.Writable() != nil {
		return syscall.EROFS
	}
	p, ok := n.child(name)
	if !ok {
		return syscall.ENOENT
	}
	ino, _ := lstatIno(n.abs(p))
	if errno := rm(); errno != 0 {
		return errno
	}
	return n.record(mk(p, ino))
}

// Rename implements NodeRenamer. go-fuse moves the node in its tree only after Rename returns;
// until it has, a data record could still resolve the old path. So the namespace lock is kept
// until the tree shows the move, and released by a short-lived goroutine.
func (n *Node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	unlock := n.vol.LockNamespace()
	held := true
	defer func() {
		if held {
			unlock()
		}
	}()
	if n.vol.Writable() != nil {
		return syscall.EROFS
	}
	np, ok := newParent.(*Node)
	if !ok {
		return syscall.EXDEV
	}
	oldP, ok1 := n.child(name)
	newP, ok2 := np.child(newName)
	if !ok1 || !ok2 {
		return syscall.ENOENT
	}
	ino, _ := lstatIno(n.abs(oldP))
	moving := n.GetChild(name)
	other := np.GetChild(newName)
	if errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags); errno != 0 {
		return errno
	}
	if errno := n.record(journal.OpRename{OldPath: oldP, NewPath: newP, Flags: flags, Ino: ino}); errno != 0 {
		return errno
	}
	if moving != nil {
		held = false
		src, dst := n.EmbeddedInode(), np.EmbeddedInode()
		exchange := flags&unix.RENAME_EXCHANGE != 0
		go func() {
			defer unlock()
			deadline := time.Now().Add(2 * time.Second)
			for i := 0; time.Now().Before(deadline); i++ {
				if dst.GetChild(newName) == moving && (!exchange || other == nil || src.GetChild(name) == other) {
					return
				}
				// The bridge updates its tree right after Rename returns: yield a few
				// times, then sleep rather than spin.
				if i < 64 {
					runtime.Gosched()
				} else {
					time.Sleep(50 * time.Microsecond)
				}
			}
		}()
	}
	return 0
}
