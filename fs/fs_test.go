package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"drfs/internal/logtest"
	"drfs/journal"
	"drfs/volume"
)

func TestToErrno(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"nil", nil, 0},
		{"errno", syscall.ENOSPC, syscall.ENOSPC},
		{"wrapped errno", fmt.Errorf("journal write: %w", syscall.ENOSPC), syscall.ENOSPC},
		{"path error", &os.PathError{Op: "open", Path: "x", Err: syscall.EACCES}, syscall.EACCES},
		{"read-only volume", fmt.Errorf("volume: %w", syscall.EROFS), syscall.EROFS},
		{"joined", errors.Join(errors.New("first"), syscall.EDQUOT), syscall.EDQUOT},
		{"no errno", errors.New("journal: crc mismatch"), syscall.EIO},
		{"wrapped sentinel", fmt.Errorf("replay: %w", volume.ErrUnreplayable), syscall.EIO},
	}
	for _, tt := range tests {
		if got := toErrno(tt.err); got != tt.want {
			t.Errorf("%s: toErrno(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestBackingFlags(t *testing.T) {
	tests := []struct {
		name string
		in   uint32
		want int
	}{
		{"read only", syscall.O_RDONLY, syscall.O_RDONLY},
		{"read write", syscall.O_RDWR, syscall.O_RDWR},
		{"write only becomes read write", syscall.O_WRONLY, syscall.O_RDWR},
		{"direct dropped", syscall.O_RDWR | syscall.O_DIRECT, syscall.O_RDWR},
		{"sync and dsync dropped", syscall.O_WRONLY | syscall.O_SYNC | syscall.O_DSYNC, syscall.O_RDWR},
		{"append dropped", syscall.O_WRONLY | syscall.O_APPEND, syscall.O_RDWR},
		{"trunc dropped", syscall.O_RDWR | syscall.O_TRUNC, syscall.O_RDWR},
		{"exec dropped", syscall.O_RDONLY | fuse.FMODE_EXEC, syscall.O_RDONLY},
		{"others kept", syscall.O_RDWR | syscall.O_CREAT | syscall.O_EXCL | syscall.O_NOATIME | syscall.O_CLOEXEC,
			syscall.O_RDWR | syscall.O_CREAT | syscall.O_EXCL | syscall.O_NOATIME | syscall.O_CLOEXEC},
	}
	for _, tt := range tests {
		if got := backingFlags(tt.in); got != tt.want {
			t.Errorf("%s: backingFlags(%#o) = %#o, want %#o", tt.name, tt.in, got, tt.want)
		}
	}
}

// testTree is a drfs node tree over a volume, built with go-fuse's bridge but never mounted:
// the node methods are called directly, as the kernel's requests would call them.
type testTree struct {
	vol  *volume.Volume
	root *Node
	src  string
}

func newTestTree(t *testing.T) *testTree {
	t.Helper()
	d := t.TempDir()
	src := filepath.Join(d, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	vol, err := volume.Open(volume.Config{Source: src, State: filepath.Join(d, "state"), CheckpointInterval: -1, SegmentSize: 1 << 20, Logger: logtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vol.Close() })
	root, err := NewRoot(vol)
	if err != nil {
		t.Fatal(err)
	}
	gofs.NewNodeFS(root, &gofs.Options{})
	return &testTree{vol: vol, root: root.(*Node), src: vol.Source()}
}

// ops returns the journal's records after seq from, decoded, without OpHot.
func (tt *testTree) ops(t *testing.T, from journal.Seq) []journal.Op {
	t.Helper()
	j := tt.vol.Journal()
	var out []journal.Op
	if j.LastSeq() <= from {
		return nil
	}
	err := j.Read(from+1, j.LastSeq(), func(r journal.Record) error {
		op, err := journal.DecodeOp(r.Type, r.Payload)
		if err != nil {
			return err
		}
		if _, hot := op.(journal.OpHot); !hot {
			out = append(out, op)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// attach adds ch to the tree under parent, as go-fuse's bridge does with the inode a
// creating method returns.
func attach(parent *Node, name string, ch *gofs.Inode) *Node {
	parent.EmbeddedInode().AddChild(name, ch, false)
	return ch.Operations().(*Node)
}

func mustErrno(t *testing.T, what string, errno syscall.Errno) {
	t.Helper()
	if errno != 0 {
		t.Fatalf("%s: %v", what, errno)
	}
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestNode_Journal runs each kind of mutation through the node methods and checks the record
// it journals and the change in the source.
func TestNode_Journal(t *testing.T) {
	tt := newTestTree(t)
	ctx := context.Background()
	var out fuse.EntryOut

	dir, errno := tt.root.Mkdir(ctx, "vm", 0o750, &out)
	mustErrno(t, "mkdir", errno)
	dn := attach(tt.root, "vm", dir)
	if p, ok := dn.JournalPath(); p != "vm" || !ok {
		t.Fatalf("JournalPath of vm = %q, %v", p, ok)
	}
	if p, ok := tt.root.JournalPath(); p != "." || !ok {
		t.Fatalf("JournalPath of the root = %q, %v", p, ok)
	}
	ch, fh, _, errno := dn.Create(ctx, "disk.raw", syscall.O_WRONLY, 0o640, &out)
	mustErrno(t, "create", errno)
	fn := attach(dn, "disk.raw", ch)
	f := fh.(*File)
	if n, errno := f.Write(ctx, []byte("hello"), 4096); errno != 0 || n != 5 {
		t.Fatalf("write: %d, %v", n, errno)
	}
	mustErrno(t, "fsync", f.Fsync(ctx, 0))
	mustErrno(t, "allocate", f.Allocate(ctx, 0, 4096, unix.FALLOC_FL_KEEP_SIZE|unix.FALLOC_FL_PUNCH_HOLE))
	if errno := f.Allocate(ctx, 0, 4096, unix.FALLOC_FL_COLLAPSE_RANGE); errno != syscall.EOPNOTSUPP {
		t.Errorf("collapse range: %v, want EOPNOTSUPP", errno)
	}
	if _, errno := f.Ioctl(ctx, 0, 0, nil, nil); errno != syscall.ENOTTY {
		t.Errorf("ioctl: %v, want ENOTTY", errno)
	}
	if fd, ok := f.PassthroughFd(); ok || fd != -1 {
		t.Errorf("PassthroughFd = %d, %v: kernel passthrough would bypass the journal", fd, ok)
	}
	f.Release(ctx)
	ino := lstat(t, filepath.Join(tt.src, "vm/disk.raw")).Ino

	_, errno = tt.root.Symlink(ctx, "vm/disk.raw", "current", &out)
	mustErrno(t, "symlink", errno)
	hard, errno := tt.root.Link(ctx, fn, "hard.raw", &out)
	mustErrno(t, "link", errno)
	attach(tt.root, "hard.raw", hard)
	mustErrno(t, "rename", dn.Rename(ctx, "disk.raw", tt.root, "moved.raw", 0))
	dn.EmbeddedInode().MvChild("disk.raw", tt.root.EmbeddedInode(), "moved.raw", true)
	mustErrno(t, "setxattr", tt.root.Setxattr(ctx, "user.drfs", []byte("v"), 0))
	mustErrno(t, "removexattr", tt.root.Removexattr(ctx, "user.drfs"))
	in := &fuse.SetAttrIn{}
	in.Valid, in.Mode = fuse.FATTR_MODE, 0o600
	mustErrno(t, "setattr", fn.Setattr(ctx, nil, in, &fuse.AttrOut{}))
	mustErrno(t, "unlink", tt.root.Unlink(ctx, "hard.raw"))
	mustErrno(t, "rmdir", tt.root.Rmdir(ctx, "vm"))

	got := tt.ops(t, 0)
	want := []journal.Op{
		journal.OpMkdir{Path: "vm"},
		journal.OpCreate{Path: "vm/disk.raw", Ino: ino},
		journal.OpWrite{Path: "vm/disk.raw", Ino: ino, Off: 4096, Data: []byte("hello")},
		journal.OpFallocate{Path: "vm/disk.raw", Ino: ino, Mode: unix.FALLOC_FL_KEEP_SIZE | unix.FALLOC_FL_PUNCH_HOLE, Len: 4096},
		journal.OpSymlink{Path: "current", Target: "vm/disk.raw"},
		journal.OpLink{OldPath: "vm/disk.raw", NewPath: "hard.raw", Ino: ino},
		journal.OpRename{OldPath: "vm/disk.raw", NewPath: "moved.raw", Ino: ino},
		journal.OpSetxattr{Path: ".", Name: "user.drfs", Value: []byte("v")},
		journal.OpRemovexattr{Path: ".", Name: "user.drfs"},
		journal.OpSetattr{Path: "moved.raw", Valid: journal.SetMode, Mode: 0o600, Ino: ino},
		journal.OpUnlink{Path: "hard.raw", Ino: ino},
		journal.OpRmdir{Path: "vm"},
	}
	if len(got) != len(want) {
		t.Fatalf("journal holds %d ops, want %d:\n%#v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Type() != w.Type() || !reflect.DeepEqual(g.Paths(), w.Paths()) || (w.Inode() != 0 && g.Inode() != w.Inode()) {
			t.Errorf("op %d: %#v, want %#v", i, g, w)
			continue
		}
		switch w := w.(type) {
		case journal.OpWrite:
			if g := g.(journal.OpWrite); g.Off != w.Off || string(g.Data) != string(w.Data) {
				t.Errorf("write: %#v", g)
			}
		case journal.OpFallocate:
			if g := g.(journal.OpFallocate); g.Mode != w.Mode || g.Off != w.Off || g.Len != w.Len {
				t.Errorf("fallocate: %#v", g)
			}
		case journal.OpSymlink:
			if g := g.(journal.OpSymlink); g.Target != w.Target {
				t.Errorf("symlink: %#v", g)
			}
		case journal.OpSetattr:
			if g := g.(journal.OpSetattr); g.Valid != w.Valid || g.Mode&0o7777 != w.Mode {
				t.Errorf("setattr: %#v", g)
			}
		case journal.OpSetxattr:
			if g := g.(journal.OpSetxattr); g.Name != w.Name || string(g.Value) != string(w.Value) {
				t.Errorf("setxattr: %#v", g)
			}
		case journal.OpCreate:
			if g := g.(journal.OpCreate); g.Mode != unix.S_IFREG|0o640&^uint32(umask()) {
				t.Errorf("create: mode %#o", g.Mode)
			}
		}
	}

	st := lstat(t, filepath.Join(tt.src, "moved.raw"))
	if st.Ino != ino || st.Mode&0o7777 != 0o600 || st.Size != 4101 {
		t.Errorf("moved.raw: ino %d mode %#o size %d", st.Ino, st.Mode, st.Size)
	}
	for _, gone := range []string{"vm", "hard.raw"} {
		if _, err := os.Lstat(filepath.Join(tt.src, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still in the source: %v", gone, err)
		}
	}
}

// TestNode_ReadOnly checks that a volume that refuses writes refuses them at every node
// method before touching the source, and journals nothing.
func TestNode_ReadOnly(t *testing.T) {
	tt := newTestTree(t)
	ctx := context.Background()
	var out fuse.EntryOut
	ch, fh, _, errno := tt.root.Create(ctx, "f", syscall.O_RDWR, 0o644, &out)
	mustErrno(t, "create", errno)
	fh.(*File).Release(ctx)
	fn := attach(tt.root, "f", ch)
	last := tt.vol.Journal().LastSeq()

	tt.vol.SetReadOnly("test")
	calls := map[string]func() syscall.Errno{
		"create": func() syscall.Errno { _, _, _, e := tt.root.Create(ctx, "g", syscall.O_RDWR, 0o644, &out); return e },
		"mkdir":  func() syscall.Errno { _, e := tt.root.Mkdir(ctx, "d", 0o755, &out); return e },
		"mknod":  func() syscall.Errno { _, e := tt.root.Mknod(ctx, "p", syscall.S_IFIFO|0o644, 0, &out); return e },
		"symlink": func() syscall.Errno {
			_, e := tt.root.Symlink(ctx, "f", "l", &out)
			return e
		},
		"link":        func() syscall.Errno { _, e := tt.root.Link(ctx, fn, "h", &out); return e },
		"unlink":      func() syscall.Errno { return tt.root.Unlink(ctx, "f") },
		"rename":      func() syscall.Errno { return tt.root.Rename(ctx, "f", tt.root, "g", 0) },
		"setxattr":    func() syscall.Errno { return tt.root.Setxattr(ctx, "user.x", []byte("v"), 0) },
		"removexattr": func() syscall.Errno { return tt.root.Removexattr(ctx, "user.x") },
		"setattr": func() syscall.Errno {
			in := &fuse.SetAttrIn{}
			in.Valid, in.Mode = fuse.FATTR_MODE, 0o600
			return fn.Setattr(ctx, nil, in, &fuse.AttrOut{})
		},
	}
	for name, call := range calls {
		if errno := call(); errno != syscall.EROFS {
			t.Errorf("%s on a read-only volume: %v, want EROFS", name, errno)
		}
	}
	if l := tt.vol.Journal().LastSeq(); l != last {
		t.Errorf("journal grew from %d to %d on a read-only volume", last, l)
	}
	ents, _ := os.ReadDir(tt.src)
	if len(ents) != 1 || ents[0].Name() != "f" {
		t.Errorf("source changed on a read-only volume: %v", ents)
	}
	if st := lstat(t, filepath.Join(tt.src, "f")); st.Mode&0o7777 != 0o644&^uint32(umask()) {
		t.Errorf("mode of f changed to %#o", st.Mode&0o7777)
	}
}

func umask() int {
	m := unix.Umask(0)
	unix.Umask(m)
	return m
}

// TestNode_UnlinkedWhileOpen checks that writes to a file with no name left reach the backing
// file but not the journal: nobody else can see them, and no path could name them.
func TestNode_UnlinkedWhileOpen(t *testing.T) {
	tt := newTestTree(t)
	ctx := context.Background()
	var out fuse.EntryOut
	ch, fh, _, errno := tt.root.Create(ctx, "scratch", syscall.O_RDWR, 0o644, &out)
	mustErrno(t, "create", errno)
	attach(tt.root, "scratch", ch)
	f := fh.(*File)
	defer f.Release(ctx)
	mustErrno(t, "unlink", tt.root.Unlink(ctx, "scratch"))
	tt.root.EmbeddedInode().RmChild("scratch")
	last := tt.vol.Journal().LastSeq()
	if n, errno := f.Write(ctx, []byte("private"), 0); errno != 0 || n != 7 {
		t.Fatalf("write: %d, %v", n, errno)
	}
	if ops := tt.ops(t, last); len(ops) != 0 {
		t.Errorf("write to an unlinked file journaled %#v", ops)
	}
	buf := make([]byte, 7)
	if n, err := unix.Pread(f.fd, buf, 0); err != nil || string(buf[:n]) != "private" {
		t.Errorf("backing file holds %q, %v", buf[:n], err)
	}
}

// TestNode_MknodRefusesDevices: the replica never creates a device node (it would open it for
// data), so a device node in the volume would stall replication for good; the mount refuses
// them as the replica does. FIFOs and sockets are created and journaled.
func TestNode_MknodRefusesDevices(t *testing.T) {
	tt := newTestTree(t)
	ctx := context.Background()
	var out fuse.EntryOut
	for _, mode := range []uint32{syscall.S_IFBLK | 0o600, syscall.S_IFCHR | 0o600} {
		if _, errno := tt.root.Mknod(ctx, "dev", mode, uint32(unix.Mkdev(7, 0)), &out); errno != syscall.EPERM {
			t.Errorf("mknod mode %#o: %v, want EPERM", mode, errno)
		}
		if _, err := os.Lstat(filepath.Join(tt.src, "dev")); !os.IsNotExist(err) {
			t.Fatalf("mknod mode %#o left %s in the source (%v)", mode, "dev", err)
		}
	}
	ch, errno := tt.root.Mknod(ctx, "fifo", syscall.S_IFIFO|0o600, 0, &out)
	mustErrno(t, "mknod fifo", errno)
	attach(tt.root, "fifo", ch)
}
