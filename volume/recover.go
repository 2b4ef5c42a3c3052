package volume

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"drfs/internal/fsutil"
	"drfs/internal/logging"
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
	rp := newReplayer(v.srcFd, cur)
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
		err := v.j.Read(journal.Seq(ck+1), journal.Seq(last), rp.apply)
		if cerr := rp.close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("replay journal: %w", err)
		}
		v.start.Replayed = rp.applied
		if len(rp.failed) > 0 {
			if !v.cfg.SkipUnreplayable {
				return unreplayableError(rp.failed)
			}
			for _, f := range rp.failed {
				v.log.Warn("replay: record skipped by operator's choice", "seq", f.Seq, "op", f.Op, "path", f.Path, logging.Err(f.Err))
				exts = append(exts, Extent{Path: f.Path, Len: -1, Reason: fmt.Sprintf("journal record %d could not be replayed: %v", f.Seq, f.Err), Since: now})
			}
			v.start.Unreplayable = len(rp.failed)
		}
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
		cur = nil // replay changed the files: scan them again
	}
	return v.checkpoint(cur)
}

// replayer re-applies the data records (write, truncate, fallocate) of the journal to the source
// files after an unclean stop, by inode: a file may have been renamed after its records were
// written. Namespace and attribute records are never re-applied: each was durable in the
// source before it was journaled (Record), so the source already holds it. Every data record
// is idempotent (it sets bytes or a size), so replaying the same journal twice, or over a source
// that already holds some of it, gives the same files. Files are opened beneath the source with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), must still be the inode the record names and
// must be regular files: whatever the guest did to the namespace, replay writes nowhere else.
type replayer struct {
	srcFd   int
	where   map[uint64]string // inode -> a path of it in the current tree
	touched map[uint64]bool
	born    map[uint64]journal.Seq // ino -> seq of its latest create record
	hot     map[hotKey]bool
	fds     map[uint64]int
	applied int
	failed  []replayFailure
}

// replayFailure is a data record that could not be applied to an existing file.
type replayFailure struct {
	Seq  journal.Seq
	Op   journal.RecordType
	Path string
	Err  error
}

func newReplayer(srcFd int, cur map[string]FileStat) *replayer {
	rp := &replayer{
		srcFd: srcFd, where: map[uint64]string{}, touched: map[uint64]bool{},
		born: map[uint64]journal.Seq{}, hot: map[hotKey]bool{}, fds: map[uint64]int{},
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
	ino := op.Inode()
	rp.touched[ino] = true
	if op.Type().Creates() {
		rp.born[ino] = r.Seq
	}
	if o, ok := op.(journal.OpHot); ok {
		rp.hot[hotKey{o.Ino, o.Region}] = true
	}
	return nil
}

// file opens the regular file that now has inode ino for writing, or reports os.ErrNotExist when
// no file of the tree has it any more.
func (rp *replayer) file(ino uint64) (int, error) {
	if fd, ok := rp.fds[ino]; ok {
		return fd, nil
	}
	p, ok := rp.where[ino]
	if !ok {
		return -1, os.ErrNotExist
	}
	fd, err := fsutil.OpenBeneath(rp.srcFd, p, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st.Ino != ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, os.ErrNotExist
	}
	rp.fds[ino] = fd
	return fd, nil
}

// close fsyncs and closes every file replay wrote.
func (rp *replayer) close() error {
	var errs []error
	for ino, fd := range rp.fds {
		if err := unix.Fsync(fd); err != nil {
			errs = append(errs, fmt.Errorf("fsync %s: %w", rp.where[ino], err))
		}
		unix.Close(fd)
	}
	rp.fds = map[uint64]int{}
	return errors.Join(errs...)
}

// apply is the second pass. A record whose file no longer exists is skipped: its removal was
// durable before the removal's record was appended. A record that fails on an existing file is
// kept in rp.failed.
func (rp *replayer) apply(r journal.Record) error {
	op, err := journal.DecodeOp(r.Type, r.Payload)
	if err != nil {
		return fmt.Errorf("seq %d: %w", r.Seq, err)
	}
	if !op.Type().IsData() {
		return nil
	}
	ino := op.Inode()
	if b, ok := rp.born[ino]; ok && r.Seq < b {
		return nil // an earlier file that had this inode number
	}
	fd, err := rp.file(ino)
	if err == nil {
		err = applyData(fd, op)
	}
	switch {
	case err == nil:
		rp.applied++
	case errors.Is(err, os.ErrNotExist), errors.Is(err, unix.ENOENT), errors.Is(err, unix.ELOOP),
		errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EXDEV):
		// Gone, or no longer reachable without a symlink: not a file of this volume any more.
	default:
		rp.failed = append(rp.failed, replayFailure{Seq: r.Seq, Op: op.Type(), Path: rp.where[ino], Err: err})
	}
	return nil
}

func applyData(fd int, op journal.Op) error {
	switch o := op.(type) {
	case journal.OpWrite:
		_, err := pwriteFull(fd, o.Data, o.Off)
		return err
	case journal.OpTruncate:
		return unix.Ftruncate(fd, o.Size)
	case journal.OpFallocate:
		if o.Mode&^(unix.FALLOC_FL_KEEP_SIZE|unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
			// Collapse and insert shift data: applying one twice is not idempotent. The
			// mount never journals them (fs refuses them, as the kernel's FUSE does).
			return fmt.Errorf("fallocate mode %#x cannot be replayed", o.Mode)
		}
		return unix.Fallocate(fd, o.Mode, o.Off, o.Len)
	}
	return fmt.Errorf("unknown data op %T", op)
}

// ErrUnreplayable is wrapped by the error Open returns when journal records could not be
// replayed into existing source files after an unclean stop.
var ErrUnreplayable = errors.New("volume: journal records could not be replayed")

func unreplayableError(failed []replayFailure) error {
	var sb strings.Builder
	for i, f := range failed {
		if i == 5 {
			fmt.Fprintf(&sb, "\n  ... and %d more", len(failed)-i)
			break
		}
		fmt.Fprintf(&sb, "\n  seq %d: %s of %s: %v", f.Seq, f.Op, f.Path, f.Err)
	}
	return fmt.Errorf("%w after an unclean stop (%d records):%s\nnothing was lost yet: fix the cause (a full or failing source disk) and mount again; or mount with --skip-unreplayable to start without them: those files may then lack the guest's last writes, and they are marked for resync so the replica matches this side", ErrUnreplayable, len(failed), sb.String())
}
