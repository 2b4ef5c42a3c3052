package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"drfs/journal"
)

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
