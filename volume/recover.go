package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"drfs/journal"
)

// recover runs at Open, before the volume serves anything:
//
//  1. files whose size, mtime or ctime differ from the table recorded at the last checkpoint,
//     and that no journal record since then explains, were changed behind drfs's back: they are
//     marked for resync;
//  2. after an unclean stop, journal records newer than the checkpoint are replayed into the
//     source files (the source's page cache may have been lost), and the activity log's hot
//     regions are marked for resync (their bytes may have reached a source file while their
//     records did not reach the journal);
//  3. a checkpoint is taken, so the next start begins from a clean table.
func (v *Volume) recover() error {
	v.hot.Store(newHotEpoch())
	ck, err := v.meta.Checkpoint()
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	v.ckSeq.Store(ck)
	if v.start.Unclean, err = v.meta.Running(); err != nil {
		return err
	}
	last := uint64(v.j.LastSeq())
	if ck > last {
		return fmt.Errorf("journal ends at seq %d but seq %d was checkpointed: the journal directory was replaced or truncated; restore it or start with a new state dir", last, ck)
	}
	if first := uint64(v.j.FirstSeq()); last > ck && first > ck+1 {
		return fmt.Errorf("journal starts at seq %d but records after checkpoint %d are needed: journal segments are missing", first, ck)
	}
	if v.start.New {
		return v.Checkpoint()
	}

	cur, err := walkSource(v.src)
	if err != nil {
		return fmt.Errorf("scan source: %w", err)
	}
	rp := newReplayer(v.src, cur)
	if last > ck {
		if err := v.j.Read(journal.Seq(ck+1), journal.Seq(last), rp.scan); err != nil {
			return fmt.Errorf("scan journal: %w", err)
		}
	}

	stored, err := v.meta.Files()
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	var exts []Extent
	for p, st := range cur {
		if rp.touched[st.Ino] || p == "." {
			continue
		}
		old, ok := stored[p]
		switch {
		case !ok:
			exts = append(exts, Extent{Path: p, Len: -1, Reason: "created while drfs was not mounted", Since: now})
		case old.Ino != st.Ino || old.Mode != st.Mode:
			exts = append(exts, Extent{Path: p, Len: -1, Reason: "replaced while drfs was not mounted", Since: now})
		case st.Mode&syscall.S_IFMT != syscall.S_IFDIR &&
			(old.Size != st.Size || old.Mtime != st.Mtime || old.Ctime != st.Ctime):
			exts = append(exts, Extent{Path: p, Len: -1, Reason: "changed while drfs was not mounted", Since: now})
		}
	}
	for p, old := range stored {
		if _, ok := cur[p]; !ok && !rp.touched[old.Ino] {
			exts = append(exts, Extent{Path: p, Len: -1, Reason: "removed while drfs was not mounted", Since: now})
		}
	}
	v.start.ChangedBack = len(exts)

	if v.start.Unclean && last > ck {
		if err := v.j.Read(journal.Seq(ck+1), journal.Seq(last), rp.apply); err != nil {
			return fmt.Errorf("replay journal: %w", err)
		}
		rp.close()
		v.start.Replayed = rp.applied
		rs := v.cfg.RegionSize
		for k := range rp.hot {
			p, ok := rp.where[k.ino]
			if !ok {
				continue // the file is gone; its removal is journaled
			}
			exts = append(exts, Extent{Path: p, Off: int64(k.region) * rs, Len: rs, Reason: "hot region at unclean stop", Since: now})
			v.start.HotRegions++
		}
	}
	if err := v.meta.AddResync(exts); err != nil {
		return fmt.Errorf("record resync: %w", err)
	}
	if v.start.Replayed > 0 {
		cur = nil // replay changed the tree: scan it again
	}
	return v.checkpoint(cur)
}

// replayer re-applies journal records to the source tree idempotently. Data records are
// applied by inode (the file may have been renamed since, and the rename may or may not have
// reached the disk); namespace records only when the object they name is still the one the
// record was made for.
type replayer struct {
	src     string
	where   map[uint64]string // recorded ino -> current path
	actual  map[uint64]uint64 // recorded ino -> inode it has now (differs when replay re-created it)
	touched map[uint64]bool
	born    map[uint64]journal.Seq // ino -> seq of its latest create record
	hot     map[hotKey]bool
	fds     map[uint64]*os.File
	applied int
}

func newReplayer(src string, cur map[string]FileStat) *replayer {
	rp := &replayer{
		src: src, where: map[uint64]string{}, actual: map[uint64]uint64{},
		touched: map[uint64]bool{}, born: map[uint64]journal.Seq{}, hot: map[hotKey]bool{},
		fds: map[uint64]*os.File{},
	}
	for p, st := range cur {
		if _, ok := rp.where[st.Ino]; !ok || p < rp.where[st.Ino] {
			rp.where[st.Ino] = p
		}
	}
	return rp
}

// scan is the first pass: which inodes the journal explains, and when each was (re)created.
func (rp *replayer) scan(r journal.Record) error {
	op, err := journal.DecodeOp(r.Type, r.Payload)
	if err != nil {
		return fmt.Errorf("seq %d: %w", r.Seq, err)
	}
	ino := journal.OpIno(op)
	rp.touched[ino] = true
	switch o := op.(type) {
	case journal.OpCreate, journal.OpMkdir, journal.OpMknod, journal.OpSymlink:
		rp.born[ino] = r.Seq
	case journal.OpHot:
		rp.hot[hotKey{o.Ino, o.Region}] = true
	}
	return nil
}

func (rp *replayer) abs(p string) string { return filepath.Join(rp.src, p) }

func (rp *replayer) inoNow(rec uint64) uint64 {
	if a, ok := rp.actual[rec]; ok {
		return a
	}
	return rec
}

// is reports whether path p currently holds the object recorded as ino.
func (rp *replayer) is(p string, ino uint64) bool {
	var st unix.Stat_t
	return unix.Lstat(rp.abs(p), &st) == nil && st.Ino == rp.inoNow(ino)
}

func (rp *replayer) file(ino uint64) (*os.File, error) {
	if f, ok := rp.fds[ino]; ok {
		return f, nil
	}
	p, ok := rp.where[ino]
	if !ok {
		return nil, os.ErrNotExist
	}
	f, err := os.OpenFile(rp.abs(p), os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	rp.fds[ino] = f
	return f, nil
}

func (rp *replayer) close() {
	for _, f := range rp.fds {
		f.Close()
	}
	rp.fds = map[uint64]*os.File{}
}

// apply is the second pass. Errors that mean "this object no longer exists" skip the record:
// its removal is journaled later or happened before the crash.
func (rp *replayer) apply(r journal.Record) error {
	op, err := journal.DecodeOp(r.Type, r.Payload)
	if err != nil {
		return fmt.Errorf("seq %d: %w", r.Seq, err)
	}
	ino := journal.OpIno(op)
	if b, ok := rp.born[ino]; ok && r.Seq < b && isData(op) {
		return nil // an earlier file that had this inode number
	}
	err = rp.applyOp(op, ino)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replay seq %d (%T): %w", r.Seq, op, err)
	}
	rp.applied++
	return nil
}

func (rp *replayer) applyOp(op journal.Op, ino uint64) error {
	switch o := op.(type) {
	case journal.OpHot:
		return nil
	case journal.OpWrite:
		f, err := rp.file(ino)
		if err != nil {
			return err
		}
		_, err = pwriteFull(int(f.Fd()), o.Data, o.Off)
		return err
	case journal.OpTruncate:
		f, err := rp.file(ino)
		if err != nil {
			return err
		}
		return f.Truncate(o.Size)
	case journal.OpFallocate:
		f, err := rp.file(ino)
		if err != nil {
			return err
		}
		return unix.Fallocate(int(f.Fd()), o.Mode, o.Off, o.Len)
	case journal.OpCreate, journal.OpMkdir, journal.OpMknod, journal.OpSymlink:
		return rp.create(op, ino)
	case journal.OpLink:
		if _, err := os.Lstat(rp.abs(o.NewPath)); err == nil {
			return nil
		}
		old, ok := rp.where[ino]
		if !ok {
			return os.ErrNotExist
		}
		return os.Link(rp.abs(old), rp.abs(o.NewPath))
	case journal.OpUnlink:
		if !rp.is(o.Path, ino) {
			return nil
		}
		rp.forget(o.Path, ino)
		return unix.Unlink(rp.abs(o.Path))
	case journal.OpRmdir:
		if !rp.is(o.Path, ino) {
			return nil
		}
		rp.forget(o.Path, ino)
		return unix.Rmdir(rp.abs(o.Path))
	case journal.OpRename:
		if !rp.is(o.OldPath, ino) {
			return nil
		}
		var other uint64
		var st unix.Stat_t
		hasOther := unix.Lstat(rp.abs(o.NewPath), &st) == nil
		if hasOther {
			other = st.Ino
		}
		if err := unix.Renameat2(unix.AT_FDCWD, rp.abs(o.OldPath), unix.AT_FDCWD, rp.abs(o.NewPath), uint(o.Flags)); err != nil {
			return err
		}
		rp.moved(o.OldPath, o.NewPath)
		if o.Flags&unix.RENAME_EXCHANGE != 0 && hasOther {
			for rec, now := range rp.actual {
				if now == other {
					rp.where[rec] = o.OldPath
				}
			}
			if _, ok := rp.actual[other]; !ok {
				rp.where[other] = o.OldPath
			}
		}
		return nil
	case journal.OpSetattr:
		p, ok := rp.where[ino]
		if !ok {
			return os.ErrNotExist
		}
		return applySetattr(rp.abs(p), o)
	case journal.OpSetxattr:
		p, ok := rp.where[ino]
		if !ok {
			return os.ErrNotExist
		}
		return unix.Lsetxattr(rp.abs(p), o.Name, o.Value, int(o.Flags))
	case journal.OpRemovexattr:
		p, ok := rp.where[ino]
		if !ok {
			return os.ErrNotExist
		}
		err := unix.Lremovexattr(rp.abs(p), o.Name)
		if errors.Is(err, unix.ENODATA) {
			return nil
		}
		return err
	}
	return fmt.Errorf("unknown op %T", op)
}

func (rp *replayer) create(op journal.Op, ino uint64) error {
	var p string
	var uid, gid uint32
	switch o := op.(type) {
	case journal.OpCreate:
		p, uid, gid = o.Path, o.Uid, o.Gid
	case journal.OpMkdir:
		p, uid, gid = o.Path, o.Uid, o.Gid
	case journal.OpMknod:
		p, uid, gid = o.Path, o.Uid, o.Gid
	case journal.OpSymlink:
		p, uid, gid = o.Path, o.Uid, o.Gid
	}
	var st unix.Stat_t
	if err := unix.Lstat(rp.abs(p), &st); err == nil {
		if st.Ino == rp.inoNow(ino) {
			rp.where[ino] = p
		}
		return nil
	}
	var err error
	switch o := op.(type) {
	case journal.OpCreate:
		var fd int
		fd, err = unix.Open(rp.abs(p), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, o.Mode&07777)
		if err == nil {
			unix.Close(fd)
		}
	case journal.OpMkdir:
		err = unix.Mkdir(rp.abs(p), o.Mode&07777)
	case journal.OpMknod:
		err = unix.Mknod(rp.abs(p), o.Mode, int(o.Rdev))
	case journal.OpSymlink:
		err = unix.Symlink(o.Target, rp.abs(p))
	}
	if err != nil {
		return err
	}
	_ = unix.Lchown(rp.abs(p), int(uid), int(gid))
	if err := unix.Lstat(rp.abs(p), &st); err != nil {
		return err
	}
	rp.where[ino] = p
	rp.actual[ino] = st.Ino
	return nil
}

func (rp *replayer) forget(p string, ino uint64) {
	if rp.where[ino] == p {
		delete(rp.where, ino)
	}
	if f, ok := rp.fds[ino]; ok {
		f.Close()
		delete(rp.fds, ino)
	}
}

// moved rewrites every known path at or below old to live below new.
func (rp *replayer) moved(old, new string) {
	for ino, p := range rp.where {
		if p == old {
			rp.where[ino] = new
		} else if strings.HasPrefix(p, old+"/") {
			rp.where[ino] = new + p[len(old):]
		}
	}
}

func applySetattr(p string, o journal.OpSetattr) error {
	if o.Valid&journal.SetMode != 0 {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, o.Mode&07777, 0); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return err
		}
	}
	if o.Valid&(journal.SetUid|journal.SetGid) != 0 {
		uid, gid := -1, -1
		if o.Valid&journal.SetUid != 0 {
			uid = int(o.Uid)
		}
		if o.Valid&journal.SetGid != 0 {
			gid = int(o.Gid)
		}
		if err := unix.Lchown(p, uid, gid); err != nil {
			return err
		}
	}
	if o.Valid&(journal.SetAtime|journal.SetMtime) != 0 {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if o.Valid&journal.SetAtime != 0 {
			ts[0] = unix.NsecToTimespec(o.Atime)
		}
		if o.Valid&journal.SetMtime != 0 {
			ts[1] = unix.NsecToTimespec(o.Mtime)
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

func isData(op journal.Op) bool {
	switch op.(type) {
	case journal.OpWrite, journal.OpTruncate, journal.OpFallocate, journal.OpSetattr, journal.OpSetxattr, journal.OpRemovexattr:
		return true
	}
	return false
}
