// Package fs adapts go-fuse onto a drfs volume: every mutating FUSE request becomes a journal
// record (through package volume) before it is acknowledged, and reads go straight to the
// backing files. Nothing below this package imports go-fuse.
package fs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"drfs/journal"
	"drfs/volume"
)

// Node is a file, directory or other object of a drfs mount. It reuses go-fuse's loopback node
// for lookups and reads and overrides every operation that changes something.
type Node struct {
	gofs.LoopbackNode
	vol *volume.Volume

	tmpMu sync.Mutex
	tmpFd int // a descriptor of an O_TMPFILE file, to link it by; -1 otherwise
}

var _ = (gofs.NodeOnForgetter)((*Node)(nil))

// OnForget closes the descriptor kept for an O_TMPFILE file.
func (n *Node) OnForget() {
	n.tmpMu.Lock()
	defer n.tmpMu.Unlock()
	if n.tmpFd >= 0 {
		unix.Close(n.tmpFd)
		n.tmpFd = -1
	}
}

var (
	_ = (gofs.NodeCreater)((*Node)(nil))
	_ = (gofs.NodeOpener)((*Node)(nil))
	_ = (gofs.NodeMkdirer)((*Node)(nil))
	_ = (gofs.NodeMknoder)((*Node)(nil))
	_ = (gofs.NodeSymlinker)((*Node)(nil))
	_ = (gofs.NodeLinker)((*Node)(nil))
	_ = (gofs.NodeUnlinker)((*Node)(nil))
	_ = (gofs.NodeRmdirer)((*Node)(nil))
	_ = (gofs.NodeRenamer)((*Node)(nil))
	_ = (gofs.NodeSetattrer)((*Node)(nil))
	_ = (gofs.NodeSetxattrer)((*Node)(nil))
	_ = (gofs.NodeRemovexattrer)((*Node)(nil))
	_ = (gofs.NodeCopyFileRanger)((*Node)(nil))
	_ = (gofs.NodeFsyncer)((*Node)(nil))
	_ = (gofs.NodeTmpfiler)((*Node)(nil))
)

// NewRoot returns the root node of a drfs mount of vol.
func NewRoot(vol *volume.Volume) (gofs.InodeEmbedder, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(vol.Source(), &st); err != nil {
		return nil, err
	}
	lr := &gofs.LoopbackRoot{Path: vol.Source(), Dev: uint64(st.Dev)}
	//lint:ignore SA1019 NewNode makes every child a drfs Node bound to the volume; moving to NodeWrapChilder means pointer embedding of LoopbackNode throughout, left for a separate change.
	lr.NewNode = func(r *gofs.LoopbackRoot, _ *gofs.Inode, _ string, _ *syscall.Stat_t) gofs.InodeEmbedder {
		return &Node{LoopbackNode: gofs.LoopbackNode{RootData: r}, vol: vol, tmpFd: -1}
	}
	root := lr.NewNode(lr, nil, "", &st) //lint:ignore SA1019 see above
	lr.RootNode = root
	return root, nil
}

// relPath returns the path of in relative to the mount root ("." for the root), or ok=false
// when in is no longer reachable from the root (unlinked while open).
func relPath(in *gofs.Inode) (string, bool) {
	root := in.Root()
	var segs []string
	for p := in; p != root; {
		name, parent := p.Parent()
		if parent == nil {
			return "", false
		}
		segs = append(segs, name)
		p = parent
	}
	if len(segs) == 0 {
		return ".", true
	}
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	return filepath.Join(segs...), true
}

// JournalPath implements volume.Target.
func (n *Node) JournalPath() (string, bool) { return relPath(n.EmbeddedInode()) }

func (n *Node) child(name string) (string, bool) {
	p, ok := n.JournalPath()
	if !ok {
		return "", false
	}
	if p == "." {
		return name, true
	}
	return p + "/" + name, true
}

func (n *Node) abs(rel string) string { return filepath.Join(n.vol.Source(), rel) }

func lstatIno(p string) (uint64, bool) {
	var st unix.Stat_t
	if unix.Lstat(p, &st) != nil {
		return 0, false
	}
	return st.Ino, true
}

// record journals op after a successful namespace syscall; a journal failure is reported to the
// caller as EIO (the change happened, and it has been marked for resync).
func (n *Node) record(op journal.Op) syscall.Errno {
	if err := n.vol.Record(op); err != nil {
		return toErrno(err)
	}
	return 0
}

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

// Open implements NodeOpener. The backing file is opened without O_DIRECT and O_SYNC: the
// journal, not the backing file, gives drfs its durability, so the guest's O_DIRECT only has to
// bypass the FUSE page cache (which the kernel does for it).
func (n *Node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, _, errno := n.LoopbackNode.Open(ctx, uint32(backingFlags(flags)))
	if errno != 0 {
		return nil, 0, errno
	}
	lf := fh.(*gofs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		lf.Release(ctx)
		return nil, 0, gofs.ToErrno(err)
	}
	f := newFile(n, lf, st.Ino, flags)
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		errno := toErrno(n.vol.DataOp(n, st.Ino, fd, func(path string) journal.Op {
			return journal.OpTruncate{Path: path, Ino: st.Ino, Size: 0}
		}, 0, 1, func() error { return unix.Ftruncate(fd, 0) }))
		if errno != 0 {
			lf.Release(ctx)
			return nil, 0, errno
		}
	}
	return f, 0, 0
}

// backingFlags turns the guest's open flags into the flags of the backing open.
func backingFlags(flags uint32) int {
	f := int(flags) &^ (syscall.O_APPEND | syscall.O_DIRECT | syscall.O_SYNC | syscall.O_DSYNC | syscall.O_TRUNC | fuse.FMODE_EXEC)
	if f&syscall.O_ACCMODE == syscall.O_WRONLY {
		// Reads are needed for copy_file_range sources and harmless otherwise.
		f = f&^syscall.O_ACCMODE | syscall.O_RDWR
	}
	return f
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

// Mknod implements NodeMknoder.
func (n *Node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	unlock := n.vol.LockNamespace()
	defer unlock()
	if n.vol.Writable() != nil {
		return nil, syscall.EROFS
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
	if errno := n.LoopbackNode.Unlink(ctx, name); errno != 0 {
		return errno
	}
	return n.record(journal.OpUnlink{Path: p, Ino: ino})
}

// Rmdir implements NodeRmdirer.
func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
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
	if errno := n.LoopbackNode.Rmdir(ctx, name); errno != 0 {
		return errno
	}
	return n.record(journal.OpRmdir{Path: p, Ino: ino})
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

// Setattr implements NodeSetattrer: a size change is a journaled truncate (with its errno
// reported, unlike go-fuse's loopback); mode, owner and times are applied and then journaled.
func (n *Node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f, _ := fh.(*File)
	p, ok := n.JournalPath()
	if !ok && f == nil {
		return syscall.ENOENT
	}
	abs := n.abs(p)
	if sz, ok := in.GetSize(); ok {
		fd := -1
		if f != nil {
			fd = f.fd
		} else {
			// truncate(2) by path: open the backing file, so the checkpoint can fsync it.
			var err error
			if fd, err = unix.Open(abs, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err != nil {
				return gofs.ToErrno(err)
			}
			defer unix.Close(fd)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return gofs.ToErrno(err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return syscall.EINVAL
		}
		err := n.vol.DataOp(n, st.Ino, fd, func(path string) journal.Op {
			return journal.OpTruncate{Path: path, Ino: st.Ino, Size: int64(sz)}
		}, int64(sz), 1, func() error { return unix.Ftruncate(fd, int64(sz)) })
		if err != nil {
			return toErrno(err)
		}
	}
	if errno := n.setattrMeta(p, ok, f, in); errno != 0 {
		return errno
	}
	var st syscall.Stat_t
	var err error
	if f != nil {
		err = syscall.Fstat(f.fd, &st)
	} else {
		err = syscall.Lstat(abs, &st)
	}
	if err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStat(&st)
	return 0
}

func (n *Node) setattrMeta(p string, named bool, f *File, in *fuse.SetAttrIn) syscall.Errno {
	mode, mok := in.GetMode()
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	atime, aok := in.GetATime()
	mtime, mtok := in.GetMTime()
	if !mok && !uok && !gok && !aok && !mtok {
		return 0
	}
	unlock := n.vol.LockNamespace()
	defer unlock()
	if n.vol.Writable() != nil {
		return syscall.EROFS
	}
	abs := n.abs(p)
	op := journal.OpSetattr{Path: p}
	if ino, ok := lstatIno(abs); ok {
		op.Ino = ino
	}
	if f != nil {
		op.Ino = f.ino
	}
	if mok {
		var err error
		if f != nil {
			err = unix.Fchmod(f.fd, mode)
		} else {
			err = unix.Fchmodat(unix.AT_FDCWD, abs, mode, 0)
		}
		if err != nil {
			return gofs.ToErrno(err)
		}
		op.Valid |= journal.SetMode
		op.Mode = mode
	}
	if uok || gok {
		su, sg := -1, -1
		if uok {
			su = int(uid)
			op.Valid |= journal.SetUid
			op.Uid = uid
		}
		if gok {
			sg = int(gid)
			op.Valid |= journal.SetGid
			op.Gid = gid
		}
		var err error
		if f != nil {
			err = unix.Fchown(f.fd, su, sg)
		} else {
			err = unix.Fchownat(unix.AT_FDCWD, abs, su, sg, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			return gofs.ToErrno(err)
		}
	}
	if aok || mtok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
			op.Valid |= journal.SetAtime
			op.Atime = atime.UnixNano()
		}
		if mtok {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
			op.Valid |= journal.SetMtime
			op.Mtime = mtime.UnixNano()
		}
		var err error
		if f != nil {
			err = unix.UtimesNanoAt(f.fd, "", ts, unix.AT_EMPTY_PATH)
		} else {
			err = unix.UtimesNanoAt(unix.AT_FDCWD, abs, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			return gofs.ToErrno(err)
		}
	}
	if !named {
		return 0 // unlinked while open: nobody else can see it
	}
	return n.record(op)
}

// Setxattr implements NodeSetxattrer.
func (n *Node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	unlock := n.vol.LockNamespace()
	defer unlock()
	if n.vol.Writable() != nil {
		return syscall.EROFS
	}
	p, ok := n.JournalPath()
	if !ok {
		return syscall.ENOENT
	}
	if err := unix.Lsetxattr(n.abs(p), attr, data, int(flags)); err != nil {
		return gofs.ToErrno(err)
	}
	ino, _ := lstatIno(n.abs(p))
	return n.record(journal.OpSetxattr{Path: p, Name: attr, Value: append([]byte(nil), data...), Flags: flags, Ino: ino})
}

// Removexattr implements NodeRemovexattrer.
func (n *Node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	unlock := n.vol.LockNamespace()
	defer unlock()
	if n.vol.Writable() != nil {
		return syscall.EROFS
	}
	p, ok := n.JournalPath()
	if !ok {
		return syscall.ENOENT
	}
	if err := unix.Lremovexattr(n.abs(p), attr); err != nil {
		return gofs.ToErrno(err)
	}
	ino, _ := lstatIno(n.abs(p))
	return n.record(journal.OpRemovexattr{Path: p, Name: attr, Ino: ino})
}

// Fsync implements NodeFsyncer for files and directories: one group-committed sync of the
// journal covers every change made so far, whatever file it was made to.
func (n *Node) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	return toErrno(n.vol.Sync())
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

// toErrno maps an error from the volume or the journal to an errno for the kernel.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return syscall.EIO
}
