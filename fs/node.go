// Package fs adapts go-fuse onto a drfs volume: every mutating FUSE request becomes a journal
// record (through package volume) before it is acknowledged, and reads go straight to the
// backing files. Nothing below this package imports go-fuse.
package fs

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"syscall"

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

// Fsync implements NodeFsyncer for files and directories: one group-committed sync of the
// journal covers every change made so far, whatever file it was made to.
func (n *Node) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	return toErrno(n.vol.Sync())
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
