package replica

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"drfs/journal"
	"drfs/wire"
)

// applier applies the ops of one change log, writing undo entries first.
type applier struct {
	v     *Volume
	t     *tree
	u     *undoWriter
	trash string
	n, n2 int // trash names handed out by undoFor and used by do, in the same order
	done  int // ops applied (for a test's simulated crash)
	// tolerant skips ops whose effect is already present (see State.TolerantUntil).
	tolerant bool
	fds      map[string]int
}

// isBarrier reports ops that change which path names which object (or discard data in a way
// that is cheaper to undo one at a time). Between barriers, ops are applied in batches whose
// undo is computed from the state before the batch and made durable with one sync: every undo
// entry restores a pre-batch state, so the reverse replay of a batch is correct whatever the
// overlaps inside it.
func isBarrier(op journal.Op) bool {
	switch o := op.(type) {
	case journal.OpUnlink, journal.OpRmdir, journal.OpRename:
		return true
	case journal.OpFallocate:
		return o.Mode&(unix.FALLOC_FL_COLLAPSE_RANGE|unix.FALLOC_FL_INSERT_RANGE) != 0
	}
	return false
}

func (v *Volume) applyOps(a *wire.Applying, ops []journal.Op, tolerant bool) (int64, error) {
	trash := filepath.Join(v.state, "trash", a.Trash)
	if err := os.MkdirAll(trash, 0o700); err != nil {
		return 0, err
	}
	v.data.keepDir(filepath.Dir(trash))
	u, err := createUndo(filepath.Join(v.state, "undo", a.Undo))
	if err != nil {
		return 0, err
	}
	ap := &applier{v: v, t: v.data, u: u, trash: trash, fds: map[string]int{}, tolerant: tolerant}
	defer ap.closeFds()
	err = ap.run(ops)
	if cerr := u.close(); err == nil {
		err = cerr
	}
	return u.n, err
}

func (a *applier) closeFds() {
	for p, fd := range a.fds {
		unix.Close(fd)
		delete(a.fds, p)
	}
}

func (a *applier) run(ops []journal.Op) error {
	for i := 0; i < len(ops); {
		j := i + 1
		if !isBarrier(ops[i]) {
			for j < len(ops) && !isBarrier(ops[j]) {
				j++
			}
		}
		batch := ops[i:j]
		for _, op := range batch {
			if err := a.undoFor(op); err != nil {
				return fmt.Errorf("save undo for %s: %w", describe(op), err)
			}
		}
		if err := a.u.sync(); err != nil {
			return fmt.Errorf("sync undo: %w", err)
		}
		for _, op := range batch {
			if a.v.crashAfter > 0 {
				if a.done == a.v.crashAfter {
					a.u.sync()
					return errCrash
				}
				a.done++
			}
			if err := a.do(op); err != nil {
				if a.tolerant && alreadyReflected(op, err) {
					continue
				}
				return fmt.Errorf("%s: %w", describe(op), err)
			}
		}
		if j-i == 1 && isBarrier(ops[i]) {
			a.closeFds()
		}
		i = j
	}
	return nil
}

// alreadyReflected reports errors that, in a tolerant window, mean the op's effect is already
// in the tree (the resync copied a later state): its object is gone, or already there.
func alreadyReflected(op journal.Op, err error) bool {
	if errors.Is(err, ErrEscape) {
		return false
	}
	switch op.(type) {
	case journal.OpRmdir:
		return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTEMPTY)
	case journal.OpLink, journal.OpSymlink, journal.OpMknod:
		return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EEXIST)
	}
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}

func describe(op journal.Op) string {
	if o, ok := op.(journal.OpWrite); ok {
		return fmt.Sprintf("write %s @%d+%d", o.Path, o.Off, len(o.Data))
	}
	if p := op.Paths(); len(p) == 2 { // link, rename
		return fmt.Sprintf("%s %s -> %s", op.Type(), p[0], p[1])
	}
	return fmt.Sprintf("%s %s", op.Type(), journal.OpPath(op))
}

// undoFor records how to restore what op is about to change.
func (a *applier) undoFor(op journal.Op) error {
	switch o := op.(type) {
	case journal.OpWrite:
		return a.saveRange(o.Path, o.Off, int64(len(o.Data)))
	case journal.OpTruncate:
		st, err := a.t.lstat(o.Path)
		if err != nil {
			return ignoreMissing(err)
		}
		if o.Size < st.Size {
			if err := a.saveRange(o.Path, o.Size, st.Size-o.Size); err != nil {
				return err
			}
		}
		return a.u.add(undoEntry{kind: undoSize, path: o.Path, size: st.Size})
	case journal.OpFallocate:
		st, err := a.t.lstat(o.Path)
		if err != nil {
			return ignoreMissing(err)
		}
		switch {
		case o.Mode&(unix.FALLOC_FL_COLLAPSE_RANGE|unix.FALLOC_FL_INSERT_RANGE) != 0:
			if err := a.saveRange(o.Path, o.Off, st.Size-o.Off); err != nil {
				return err
			}
		case o.Mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0:
			if err := a.saveRange(o.Path, o.Off, o.Len); err != nil {
				return err
			}
		}
		return a.u.add(undoEntry{kind: undoSize, path: o.Path, size: st.Size})
	case journal.OpCreate, journal.OpMkdir, journal.OpMknod, journal.OpSymlink, journal.OpLink:
		p := op.Object() // the object this op creates (a link's new name)
		if a.t.exists(p) {
			return nil // an idempotent re-create of an object the log did not make
		}
		return a.u.add(undoEntry{kind: undoRemove, path: p})
	case journal.OpUnlink:
		return a.moveAside(o.Path)
	case journal.OpRmdir:
		return a.moveAside(o.Path)
	case journal.OpRename:
		if o.Flags&unix.RENAME_EXCHANGE == 0 && a.t.exists(o.NewPath) {
			if err := a.moveAside(o.NewPath); err != nil {
				return err
			}
		}
		return a.u.add(undoEntry{kind: undoRename, path: o.NewPath, other: o.OldPath, flags: o.Flags & unix.RENAME_EXCHANGE})
	case journal.OpSetattr:
		st, err := a.t.lstat(o.Path)
		if err != nil {
			return ignoreMissing(err)
		}
		return a.u.add(undoEntry{kind: undoAttr, path: o.Path, mode: st.Mode, uid: st.Uid, gid: st.Gid, atime: st.Atim.Nano(), mtime: st.Mtim.Nano()})
	case journal.OpSetxattr:
		return a.saveXattr(o.Path, o.Name)
	case journal.OpRemovexattr:
		return a.saveXattr(o.Path, o.Name)
	}
	return fmt.Errorf("unsupported op %T", op)
}

func ignoreMissing(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// saveRange records the bytes of [off, off+n) that exist now, and the size to cut back to.
func (a *applier) saveRange(p string, off, n int64) error {
	st, err := a.t.lstat(p)
	if err != nil {
		return ignoreMissing(err) // created by this batch: its undoRemove covers it
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s is not a regular file on the replica", p)
	}
	if off+n > st.Size {
		if err := a.u.add(undoEntry{kind: undoSize, path: p, size: st.Size}); err != nil {
			return err
		}
	}
	end := min(off+n, st.Size)
	if off >= end {
		return nil
	}
	fd, err := a.fd(p)
	if err != nil {
		return err
	}
	const chunk = 4 << 20
	buf := make([]byte, min(end-off, chunk))
	for pos := off; pos < end; {
		// Holes read as zeros; skip them so undo of a sparse image stays small.
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if err != nil || data >= end {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = end
		}
		for q := data; q < min(hole, end); {
			k := min(min(hole, end)-q, chunk)
			r, err := unix.Pread(fd, buf[:k], q)
			if err != nil {
				return err
			}
			if r == 0 {
				break
			}
			if err := a.u.add(undoEntry{kind: undoBytes, path: p, off: q, data: buf[:r]}); err != nil {
				return err
			}
			q += int64(r)
		}
		pos = hole
	}
	// Where there were holes, the undo must punch them again.
	return a.u.add(undoEntry{kind: undoBytes, path: p, off: off, size: end - off, flags: 1})
}

func (a *applier) saveXattr(p, name string) error {
	var val []byte
	err := a.t.at(p, func(dfd int, base string) error {
		buf := make([]byte, 64<<10)
		n, err := unix.Lgetxattr(procPath(dfd, base), name, buf)
		if err == nil {
			val = buf[:n]
		}
		return err
	})
	if errors.Is(err, unix.ENODATA) {
		return a.u.add(undoEntry{kind: undoNoXattr, path: p, other: name})
	}
	if err != nil {
		return ignoreMissing(err)
	}
	return a.u.add(undoEntry{kind: undoXattr, path: p, other: name, data: val})
}

// moveAside moves p into the log's trash; undo moves it back.
func (a *applier) moveAside(p string) error {
	if !a.t.exists(p) {
		return nil
	}
	a.n++
	dst := filepath.Join(a.trash, fmt.Sprintf("%d", a.n))
	return a.u.add(undoEntry{kind: undoMoveBack, path: p, other: dst})
}

func procPath(dfd int, name string) string { return fmt.Sprintf("/proc/self/fd/%d/%s", dfd, name) }

func (a *applier) fd(p string) (int, error) {
	if fd, ok := a.fds[p]; ok {
		return fd, nil
	}
	fd, err := a.t.openFile(p, unix.O_RDWR)
	if err != nil {
		return -1, err
	}
	a.fds[p] = fd
	return fd, nil
}

// do applies one op to the tree.
func (a *applier) do(op journal.Op) error {
	switch o := op.(type) {
	case journal.OpWrite:
		fd, err := a.fd(o.Path)
		if err != nil {
			return err
		}
		return pwriteFull(fd, o.Data, o.Off)
	case journal.OpTruncate:
		fd, err := a.fd(o.Path)
		if err != nil {
			return err
		}
		return unix.Ftruncate(fd, o.Size)
	case journal.OpFallocate:
		fd, err := a.fd(o.Path)
		if err != nil {
			return err
		}
		return fallocate(fd, o.Mode, o.Off, o.Len)
	case journal.OpCreate:
		return a.t.at(o.Path, func(dfd int, name string) error {
			fd, err := unix.Openat(dfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, o.Mode&07777)
			if errors.Is(err, unix.EEXIST) {
				// Re-created: open what is there only if it is a regular file (never
				// a FIFO, which would block, nor a device).
				pfd, perr := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if perr != nil {
					return perr
				}
				fd, err = reopenRegular(pfd, o.Path, unix.O_WRONLY)
				unix.Close(pfd)
			}
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			unix.Fchown(fd, int(o.Uid), int(o.Gid))
			return unix.Fchmod(fd, o.Mode&07777)
		})
	case journal.OpMkdir:
		return a.t.at(o.Path, func(dfd int, name string) error {
			if err := unix.Mkdirat(dfd, name, o.Mode&07777); err != nil && !errors.Is(err, unix.EEXIST) {
				return err
			}
			unix.Fchownat(dfd, name, int(o.Uid), int(o.Gid), unix.AT_SYMLINK_NOFOLLOW)
			return unix.Fchmodat(dfd, name, o.Mode&07777, 0)
		})
	case journal.OpMknod:
		if t := o.Mode & unix.S_IFMT; t != unix.S_IFIFO && t != unix.S_IFSOCK {
			// A device node would hand whoever writes the volume the replica host's
			// disks; FIFOs and sockets are inert since the replica never opens them.
			return fmt.Errorf("%w: %s would be a %s; device nodes are not replicated", ErrNotRegular, o.Path, fileType(o.Mode))
		}
		return a.t.at(o.Path, func(dfd int, name string) error {
			if err := unix.Mknodat(dfd, name, o.Mode, int(o.Rdev)); err != nil && !errors.Is(err, unix.EEXIST) {
				return err
			}
			return unix.Fchownat(dfd, name, int(o.Uid), int(o.Gid), unix.AT_SYMLINK_NOFOLLOW)
		})
	case journal.OpSymlink:
		return a.t.at(o.Path, func(dfd int, name string) error {
			if err := unix.Symlinkat(o.Target, dfd, name); err != nil {
				if !errors.Is(err, unix.EEXIST) {
					return err
				}
				buf := make([]byte, 4096)
				n, rerr := unix.Readlinkat(dfd, name, buf)
				if rerr != nil || string(buf[:n]) != o.Target {
					return err
				}
			}
			return unix.Fchownat(dfd, name, int(o.Uid), int(o.Gid), unix.AT_SYMLINK_NOFOLLOW)
		})
	case journal.OpLink:
		return a.t.at(o.OldPath, func(ofd int, oname string) error {
			return a.t.at(o.NewPath, func(nfd int, nname string) error {
				err := unix.Linkat(ofd, oname, nfd, nname, 0)
				if errors.Is(err, unix.EEXIST) {
					var s1, s2 unix.Stat_t
					if unix.Fstatat(ofd, oname, &s1, unix.AT_SYMLINK_NOFOLLOW) == nil &&
						unix.Fstatat(nfd, nname, &s2, unix.AT_SYMLINK_NOFOLLOW) == nil && s1.Ino == s2.Ino {
						return nil
					}
				}
				return err
			})
		})
	case journal.OpUnlink:
		return a.doMoveAside(o.Path)
	case journal.OpRmdir:
		// rmdir is a move to the trash (so it can be undone), but must keep rmdir's rule: the
		// primary only journals the removal of an empty directory.
		if err := a.checkEmptyDir(o.Path); err != nil {
			return err
		}
		return a.doMoveAside(o.Path)
	case journal.OpRename:
		if o.Flags&unix.RENAME_EXCHANGE == 0 && a.t.exists(o.NewPath) {
			if st, err := a.t.lstat(o.NewPath); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				if err := a.checkEmptyDir(o.NewPath); err != nil {
					return err
				}
			}
			if err := a.doMoveAside(o.NewPath); err != nil {
				return err
			}
		}
		return a.t.rename(o.OldPath, o.NewPath, uint(o.Flags&unix.RENAME_EXCHANGE))
	case journal.OpSetattr:
		return setattr(a.t, o.Path, o.Valid, o.Mode, o.Uid, o.Gid, o.Atime, o.Mtime)
	case journal.OpSetxattr:
		return a.t.at(o.Path, func(dfd int, name string) error {
			return unix.Lsetxattr(procPath(dfd, name), o.Name, o.Value, int(o.Flags&^(unix.XATTR_CREATE|unix.XATTR_REPLACE)))
		})
	case journal.OpRemovexattr:
		return a.t.at(o.Path, func(dfd int, name string) error {
			err := unix.Lremovexattr(procPath(dfd, name), o.Name)
			if errors.Is(err, unix.ENODATA) {
				return nil
			}
			return err
		})
	}
	return fmt.Errorf("unsupported op %T", op)
}

// checkEmptyDir fails unless p is an empty directory.
func (a *applier) checkEmptyDir(p string) error {
	fd, err := a.t.open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	f := fdFile(fd)
	defer f.Close()
	names, _ := f.Readdirnames(1)
	if len(names) > 0 {
		return fmt.Errorf("directory %s is not empty on the replica: %w", p, unix.ENOTEMPTY)
	}
	return nil
}

// doMoveAside performs the move recorded by moveAside, in the same order.
func (a *applier) doMoveAside(p string) error {
	if !a.t.exists(p) {
		return fmt.Errorf("%s does not exist on the replica: %w", p, unix.ENOENT)
	}
	a.closeFds()
	// The trash names were numbered in undoFor in the same order as these moves.
	a.n2++
	return a.t.moveOut(p, filepath.Join(a.trash, fmt.Sprintf("%d", a.n2)))
}

func setattr(t *tree, p string, valid, mode, uid, gid uint32, atime, mtime int64) error {
	return t.at(p, func(dfd int, name string) error {
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if valid&journal.SetMode != 0 && st.Mode&unix.S_IFMT != unix.S_IFLNK {
			if err := unix.Fchmodat(dfd, name, mode&07777, 0); err != nil {
				return err
			}
		}
		if valid&(journal.SetUid|journal.SetGid) != 0 {
			u, g := -1, -1
			if valid&journal.SetUid != 0 {
				u = int(uid)
			}
			if valid&journal.SetGid != 0 {
				g = int(gid)
			}
			if err := unix.Fchownat(dfd, name, u, g, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
		}
		if valid&(journal.SetAtime|journal.SetMtime) != 0 {
			ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
			if valid&journal.SetAtime != 0 {
				ts[0] = unix.NsecToTimespec(atime)
			}
			if valid&journal.SetMtime != 0 {
				ts[1] = unix.NsecToTimespec(mtime)
			}
			return unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
		return nil
	})
}

// undoOne applies one undo entry; missing objects are skipped so rollback is idempotent.
func (v *Volume) undoOne(e undoEntry) error { return undoOn(v.data, e, false) }

// undoOn applies e to tree t. With copyTrash, objects in the trash are copied back instead of
// moved (a clone must not take them from the replica).
func undoOn(t *tree, e undoEntry, copyTrash bool) error {
	switch e.kind {
	case undoBytes:
		fd, err := t.openFile(e.path, unix.O_RDWR)
		if err != nil {
			return ignoreMissing(err)
		}
		defer unix.Close(fd)
		if e.flags == 1 {
			// Punch the whole range first; the data entries (applied after this one in
			// reverse order) fill the data back in.
			return fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, e.off, e.size)
		}
		return pwriteFull(fd, e.data, e.off)
	case undoSize:
		fd, err := t.openFile(e.path, unix.O_RDWR)
		if err != nil {
			return ignoreMissing(err)
		}
		defer unix.Close(fd)
		return unix.Ftruncate(fd, e.size)
	case undoRemove:
		return t.at(e.path, func(dfd int, name string) error {
			var st unix.Stat_t
			if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return ignoreMissing(err)
			}
			flags := 0
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				flags = unix.AT_REMOVEDIR
			}
			return ignoreMissing(unix.Unlinkat(dfd, name, flags))
		})
	case undoMoveBack:
		if _, err := os.Lstat(e.other); err != nil {
			return nil // already moved back
		}
		if copyTrash {
			return t.at(e.path, func(dfd int, name string) error {
				return copyTree(e.other, procPath(dfd, name))
			})
		}
		return t.moveIn(e.other, e.path)
	case undoRename:
		if !t.exists(e.path) {
			return nil
		}
		if e.flags == 0 && t.exists(e.other) {
			return nil // already renamed back
		}
		return t.rename(e.path, e.other, uint(e.flags))
	case undoAttr:
		return ignoreMissing(setattr(t, e.path, journal.SetMode|journal.SetUid|journal.SetGid|journal.SetAtime|journal.SetMtime, e.mode, e.uid, e.gid, e.atime, e.mtime))
	case undoXattr:
		return ignoreMissing(t.at(e.path, func(dfd int, name string) error {
			return unix.Lsetxattr(procPath(dfd, name), e.other, e.data, 0)
		}))
	case undoNoXattr:
		return ignoreMissing(t.at(e.path, func(dfd int, name string) error {
			err := unix.Lremovexattr(procPath(dfd, name), e.other)
			if errors.Is(err, unix.ENODATA) {
				return nil
			}
			return err
		}))
	}
	return fmt.Errorf("unknown undo entry kind %d", e.kind)
}

func pwriteFull(fd int, data []byte, off int64) error {
	for len(data) > 0 {
		n, err := unix.Pwrite(fd, data, off)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		data, off = data[n:], off+int64(n)
	}
	return nil
}

// fallocate is fallocate(2) on a replica file. A filesystem without hole punching or zeroing
// (some network and FUSE filesystems) gets the same content written as zeros, so a replica
// directory there still applies and rolls back; only the allocation differs.
func fallocate(fd int, mode uint32, off, n int64) error {
	err := unix.Fallocate(fd, mode, off, n)
	if !errors.Is(err, unix.EOPNOTSUPP) || mode&^(unix.FALLOC_FL_KEEP_SIZE|unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
		return err
	}
	if mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) == 0 {
		return err // plain preallocation: nothing to write
	}
	end := off + n
	if mode&unix.FALLOC_FL_KEEP_SIZE != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		end = min(end, st.Size)
	}
	zero := make([]byte, min(max(end-off, 0), 1<<20))
	for pos := off; pos < end; {
		k := min(int64(len(zero)), end-pos)
		if err := pwriteFull(fd, zero[:k], pos); err != nil {
			return err
		}
		pos += k
	}
	return nil
}
