package volume

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"drfs/internal/fsutil"
	"drfs/internal/logging"
	"drfs/journal"
)

// Target names the file a data mutation acts on. JournalPath is called with the volume's
// operation lock held, so the path it returns is ordered correctly against journaled renames.
type Target interface {
	// JournalPath returns the file's path relative to the volume root, or ok=false when the
	// file has no name any more (unlinked while open): its changes are invisible to everyone
	// else and are not journaled.
	JournalPath() (path string, ok bool)
}

// hotKey identifies an activity-log region: the backing inode and the region index.
type hotKey struct{ ino, region uint64 }

type hotEntry struct {
	done chan struct{}
	err  error
}

// hotEpoch is the set of regions recorded hot since the last checkpoint, and the files written
// in them. A checkpoint swaps in a new, empty epoch while no mutation is in flight.
type hotEpoch struct {
	m     sync.Map       // hotKey -> *hotEntry
	files fsutil.SyncSet // a descriptor of every file written in the epoch, for the checkpoint
}

func newHotEpoch() *hotEpoch { return &hotEpoch{} }

// markHot makes sure every region of [off, off+n) of ino is durably recorded as hot in the
// current epoch before the caller modifies it through fd (DRBD's activity log), and that the
// epoch holds a descriptor of the file for the next checkpoint to fsync. Only the first write to
// a region per checkpoint epoch pays for a journal sync; concurrent first writers share it, and
// a range covering many new regions records them all under one sync.
func (v *Volume) markHot(ino uint64, fd int, off, n int64) error {
	if n <= 0 {
		n = 1
	}
	ep := v.hot.Load()
	rs := v.cfg.RegionSize
	// Fast path, taken by nearly every write: one region, already recorded.
	if off/rs == (off+n-1)/rs {
		if e, ok := ep.m.Load(hotKey{ino, uint64(off / rs)}); ok {
			he := e.(*hotEntry)
			<-he.done
			if he.err == nil {
				return nil
			}
		}
	}
	var mine []hotKey
	var mineE []*hotEntry
	var wait []*hotEntry
	for r := uint64(off / rs); r <= uint64((off+n-1)/rs); r++ {
		k := hotKey{ino, r}
		if e, ok := ep.m.Load(k); ok {
			wait = append(wait, e.(*hotEntry))
			continue
		}
		he := &hotEntry{done: make(chan struct{})}
		if actual, loaded := ep.m.LoadOrStore(k, he); loaded {
			wait = append(wait, actual.(*hotEntry))
			continue
		}
		mine = append(mine, k)
		mineE = append(mineE, he)
	}
	if len(mine) > 0 {
		if err := ep.files.Add(fd); err != nil {
			for i, he := range mineE {
				he.err = err
				ep.m.Delete(mine[i])
				close(he.done)
			}
			return err
		}
		t0 := time.Now()
		var seq journal.Seq
		var err error
		for _, k := range mine {
			if seq, err = v.j.Append(journal.RecHot, journal.EncodeOp(journal.OpHot{Ino: ino, Region: k.region})); err != nil {
				break
			}
		}
		if err == nil {
			err = v.j.Sync(seq)
		}
		for i, he := range mineE {
			he.err = err
			if err != nil {
				ep.m.Delete(mine[i])
			}
			close(he.done)
		}
		if err != nil {
			return fmt.Errorf("record hot region: %w", err)
		}
		v.m.hotMarks.Add(float64(len(mine)))
		v.m.hotDur.Observe(time.Since(t0).Seconds())
	}
	for _, he := range wait {
		<-he.done
		if he.err != nil {
			return fmt.Errorf("record hot region: %w", he.err)
		}
	}
	return nil
}

// Write journals data at off of the file and then writes it to fd. It returns when the record
// is in the journal (surviving a daemon crash) and the data is in the backing file.
func (v *Volume) Write(t Target, ino uint64, fd int, data []byte, off int64) (int, error) {
	n, err := v.write(t, ino, fd, data, off)
	if v.journalFull(err) {
		n, err = v.write(t, ino, fd, data, off)
	}
	return n, err
}

// errJournal marks an error of the journal (not of the source file).
var errJournal = errors.New("journal")

// journalFull reports whether err is the journal's filesystem being full and, if so, takes a
// checkpoint, which releases every journal segment nobody needs any more: the caller retries
// once before the guest sees ENOSPC.
func (v *Volume) journalFull(err error) bool {
	if !errors.Is(err, errJournal) || !errors.Is(err, syscall.ENOSPC) {
		return false
	}
	v.log.Warn("the journal's filesystem is full: releasing what the journal no longer needs")
	if hook := v.onFull.Load(); hook != nil {
		(*hook)() // the shipper folds records a replica still needs into dirty extents
	}
	if cerr := v.Checkpoint(); cerr != nil {
		v.log.Warn("checkpoint", logging.Err(cerr))
	}
	return true
}

func (v *Volume) write(t Target, ino uint64, fd int, data []byte, off int64) (int, error) {
	v.opLock.RLock()
	defer v.opLock.RUnlock()
	if err := v.Writable(); err != nil {
		return 0, err
	}
	path, ok := t.JournalPath()
	if ok {
		if err := v.markHot(ino, fd, off, int64(len(data))); err != nil {
			return 0, fmt.Errorf("%w: %w", errJournal, err)
		}
		var hdr [128]byte
		h := journal.AppendWriteHeader(hdr[:0], path, ino, off)
		if _, err := v.j.Append(journal.RecWrite, h, data); err != nil {
			return 0, fmt.Errorf("%w write: %w", errJournal, err)
		}
		v.appended.Add(int64(len(h) + len(data)))
	}
	n, err := pwriteFull(fd, data, off)
	if err != nil && ok {
		// The journal holds bytes the source may not: let resync compare this range.
		v.resyncLater(path, off, int64(len(data)), "backing write failed: "+err.Error())
	}
	return n, err
}

// DataOp journals the op mk builds for the file's current path (a truncate or fallocate of ino)
// with the region [hotOff, hotOff+hotLen) marked hot, then runs do, which performs it on the
// backing file open as fd.
func (v *Volume) DataOp(t Target, ino uint64, fd int, mk func(path string) journal.Op, hotOff, hotLen int64, do func() error) error {
	err := v.dataOp(t, ino, fd, mk, hotOff, hotLen, do)
	if v.journalFull(err) {
		err = v.dataOp(t, ino, fd, mk, hotOff, hotLen, do)
	}
	return err
}

func (v *Volume) dataOp(t Target, ino uint64, fd int, mk func(path string) journal.Op, hotOff, hotLen int64, do func() error) error {
	v.opLock.RLock()
	defer v.opLock.RUnlock()
	if err := v.Writable(); err != nil {
		return err
	}
	path, ok := t.JournalPath()
	if ok {
		if err := v.markHot(ino, fd, hotOff, hotLen); err != nil {
			return fmt.Errorf("%w: %w", errJournal, err)
		}
		op := mk(path)
		b := journal.EncodeOp(op)
		if _, err := v.j.Append(op.Type(), b); err != nil {
			return fmt.Errorf("%w %T: %w", errJournal, op, err)
		}
		v.appended.Add(int64(len(b)))
	}
	err := do()
	if err != nil && ok {
		v.resyncLater(path, 0, -1, "backing operation failed: "+err.Error())
	}
	return err
}

// LockNamespace takes the operation lock exclusively for a namespace or attribute mutation:
// the caller performs the syscall, then Record()s the op, then calls the returned unlock.
func (v *Volume) LockNamespace() (unlock func()) {
	v.opLock.Lock()
	return v.opLock.Unlock
}

// Record journals a namespace or attribute op that has already been applied to the source. The
// caller holds LockNamespace. The change is made durable in the source first and the record in
// the journal before Record returns, so replay never has to re-apply it (journal/doc.go,
// "Replay"). Data ops (the content of a linked O_TMPFILE) are only appended: the caller syncs.
// If the source or the journal fails, the path is marked for resync so the replica cannot
// silently miss the change.
func (v *Volume) Record(op journal.Op) error {
	if err := v.Writable(); err != nil {
		return err
	}
	resync := func(err error) { v.resyncLater(op.Changed(), 0, -1, err.Error()) }
	if err := v.metaDurable(op); err != nil {
		resync(fmt.Errorf("source not durable: %w", err))
		return fmt.Errorf("make %s durable: %w", op.Type(), err)
	}
	b := journal.EncodeOp(op)
	seq, err := v.j.Append(op.Type(), b)
	if err == nil && !op.Type().IsData() {
		err = v.j.Sync(seq)
	}
	if err != nil {
		resync(fmt.Errorf("journal append failed: %w", err))
		return fmt.Errorf("journal %s: %w", op.Type(), err)
	}
	v.appended.Add(int64(len(b)))
	return nil
}

func (v *Volume) resyncLater(path string, off, n int64, reason string) {
	if err := v.meta.AddResync([]Extent{{Path: path, Off: off, Len: n, Reason: reason}}); err != nil {
		v.log.Warn("record resync", "path", path, logging.Err(err))
	}
}

func pwriteFull(fd int, data []byte, off int64) (int, error) {
	done := 0
	for done < len(data) {
		n, err := unix.Pwrite(fd, data[done:], off+int64(done))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, syscall.EIO
		}
		done += n
	}
	return done, nil
}

// MarkHot records [off, off+n) of ino hot, for data that reaches a source file outside Write
// (a linked O_TMPFILE open as fd). The caller holds LockNamespace.
func (v *Volume) MarkHot(ino uint64, fd int, off, n int64) error { return v.markHot(ino, fd, off, n) }

// OnJournalFull installs fn, called (without locks held) when the journal's filesystem is full
// before drfs retries: the shipper degrades the journal to a dirty-extent map there, so the
// guest keeps writing while the replica is away.
func (v *Volume) OnJournalFull(fn func()) { v.onFull.Store(&fn) }
