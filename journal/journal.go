package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"drfs/internal/fsutil"
	"drfs/internal/logging"
)

// Seq is a record sequence number. The first record of a journal is 1.
type Seq uint64

// DefaultSegmentSize is the segment size used when Options.SegmentSize is 0.
const DefaultSegmentSize = 64 << 20

// minSegmentSize keeps tiny test sizes workable.
const minSegmentSize = 256

// Options configure a Journal.
type Options struct {
	// SegmentSize is the size of a preallocated segment file (default
	// 64 MiB). A record larger than a segment gets a segment sized to fit.
	SegmentSize int64
	// Logger receives recovery and background-error messages; nil discards them.
	Logger *slog.Logger
	// MetricLabels are constant labels added to every metric (for example
	// the volume name when one process serves several volumes).
	MetricLabels prometheus.Labels
	// FirstSeq is the seq of the first record of a journal created by Open in an empty
	// directory (default 1). A promoted replica continues the volume's numbering this way.
	// It is ignored when the directory already holds segments.
	FirstSeq Seq
}

// RecoveryInfo describes what Open found.
type RecoveryInfo struct {
	// FirstSeq and LastSeq are the records present after recovery; FirstSeq
	// is 0 when none are. LastSeq is the last seq ever assigned (0 for a new
	// journal), so appends continue at LastSeq+1.
	FirstSeq, LastSeq Seq
	// TornBytes is the number of non-zero bytes cut from the tail.
	TornBytes int64
	// BrokenFile is where the first cut range was saved ("" if none).
	BrokenFile string
}

// Record is one journal record as returned by Read.
type Record struct {
	Seq     Seq
	Type    RecordType
	Payload []byte
}

// ErrReleased is returned by Read for seqs that Release already deleted.
var ErrReleased = errors.New("journal: records released")

// Journal is an open journal directory. All methods are safe for concurrent
// use.
type Journal struct {
	dir      string
	segSize  int64
	firstSeq Seq // Options.FirstSeq
	log      *slog.Logger
	rec      RecoveryInfo

	// mu orders appends: it assigns seqs and reserves byte ranges, nothing
	// else (frames are copied outside it).
	mu     sync.Mutex
	next   Seq
	active *segment
	off    int64
	closed bool

	// segMu guards segs, ordered by first seq; the last one is active.
	segMu    sync.Mutex
	segs     []*segment // nil once closed
	firstSeg Seq        // segs[0].first at Close

	// pubMu guards the published and durable watermarks.
	pubMu        sync.Mutex
	pubCond      sync.Cond // published advanced
	durCond      sync.Cond // durable advanced, or the flush loop stopped
	published    Seq       // every record <= published is fully in its segment
	done         map[Seq]struct{}
	pubWaiters   int
	syncWant     Seq
	durable      Seq
	syncErr      error // sticky: a failed fdatasync poisons the journal
	flushStopped bool

	// Lock-free mirrors for fast paths.
	lastA, pubA, durA atomic.Uint64

	syncKick  chan struct{}
	allocKick chan struct{}
	spare     chan allocResult // the preallocated next segment
	allocBusy atomic.Bool      // allocLoop is filling a spare
	allocID   atomic.Uint64
	stop      chan struct{}
	wg        sync.WaitGroup

	m metrics
}

// Open opens (creating if needed) the journal in dir, recovers it (see
// doc.go, "Recovery") and returns it ready to append after LastSeq.
func Open(dir string, opts Options) (*Journal, error) {
	size := opts.SegmentSize
	if size == 0 {
		size = DefaultSegmentSize
	}
	size = max(size, minSegmentSize)
	size = (size + frameAlign - 1) &^ (frameAlign - 1)
	j := &Journal{
		dir:       dir,
		segSize:   size,
		firstSeq:  opts.FirstSeq,
		log:       logging.OrDiscard(opts.Logger),
		done:      make(map[Seq]struct{}),
		syncKick:  make(chan struct{}, 1),
		allocKick: make(chan struct{}, 1),
		spare:     make(chan allocResult, 1),
		stop:      make(chan struct{}),
	}
	j.pubCond.L = &j.pubMu
	j.durCond.L = &j.pubMu
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := j.recover(); err != nil {
		for _, s := range j.segs {
			s.unmapClose()
		}
		return nil, fmt.Errorf("open journal %s: %w", dir, err)
	}
	last := j.next - 1
	j.published, j.durable = last, last
	j.lastA.Store(uint64(last))
	j.pubA.Store(uint64(last))
	j.durA.Store(uint64(last))
	j.initMetrics(opts.MetricLabels)
	j.wg.Add(2)
	go j.flushLoop()
	go j.allocLoop()
	j.kickAlloc()
	return j, nil
}

// allocResult is what allocLoop hands to the next rollover.
type allocResult struct {
	seg *segment // nil on error
	err error
}

// Recovery reports what Open found and repaired.
func (j *Journal) Recovery() RecoveryInfo { return j.rec }

// Dir returns the journal directory.
func (j *Journal) Dir() string { return j.dir }

// Append adds a record whose payload is the concatenation of parts and
// returns its seq. The parts are copied before Append returns. When Append
// returns, the record and every record before it are in the page cache of
// their segment files, so they survive the death of the process (kill -9) but
// not yet a power loss: call Sync for that. Errors from allocating a new
// segment (ENOSPC) are returned wrapped; records already appended are not
// affected.
func (j *Journal) Append(typ RecordType, parts ...[]byte) (Seq, error) {
	if typ == 0 {
		return 0, ErrBadRecordType
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > MaxPayload {
		return 0, fmt.Errorf("append %d bytes: %w", n, ErrTooLarge)
	}
	fs := frameSize(n)

	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return 0, ErrClosed
	}
	if j.off+fs > j.active.size {
		if err := j.rollLocked(fs); err != nil {
			j.mu.Unlock()
			return 0, fmt.Errorf("append: %w", err)
		}
	}
	seq := j.next
	j.next++
	seg, off := j.active, j.off
	j.off += fs
	j.lastA.Store(uint64(seq))
	j.mu.Unlock()

	// One pwritev at the reserved offset: the bytes land in the page cache (surviving
	// kill -9) without dirtying the mapping, whose write-protect faults at writeback made
	// every fdatasync markedly slower. The padding is already zero in a fresh segment.
	var hdr [frameHeader]byte
	putFrameHeader(hdr[:], n, seq, typ)
	crc := crc32.Update(0, castagnoli, hdr[4:])
	var iovs [][]byte
	if len(parts) <= 3 {
		var arr [4][]byte
		iovs = arr[:0]
	}
	iovs = append(iovs, hdr[:])
	for _, part := range parts {
		if len(part) > 0 {
			crc = crc32.Update(crc, castagnoli, part)
			iovs = append(iovs, part)
		}
	}
	binary.LittleEndian.PutUint32(hdr[0:4], crc)
	if err := pwritevFull(int(seg.f.Fd()), iovs, off); err != nil {
		// The reserved range stays zero or torn; recovery cuts there. Nothing after this seq
		// can be published, so fail loudly.
		j.failAppend(seq, err)
		return 0, fmt.Errorf("append seq %d: %w", seq, err)
	}
	j.m.records.Add(1)
	j.m.bytes.Add(uint64(fs))
	if err := j.publish(seq); err != nil {
		return 0, err
	}
	return seq, nil
}

// failAppend poisons the journal after a record could not be written: the records after it
// could never be published, so every waiter and every later Append fails with the cause.
func (j *Journal) failAppend(seq Seq, err error) {
	j.pubMu.Lock()
	if j.syncErr == nil {
		j.syncErr = fmt.Errorf("journal write of seq %d failed: %w", seq, err)
		j.log.Error("journal: write failed", "seq", seq, logging.Err(err))
	}
	j.pubCond.Broadcast()
	j.durCond.Broadcast()
	j.pubMu.Unlock()
}

// pwritevFull writes iovs at off, finishing short writes.
func pwritevFull(fd int, iovs [][]byte, off int64) error {
	for len(iovs) > 0 {
		n, err := unix.Pwritev(fd, iovs, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		off += int64(n)
		for n > 0 && len(iovs) > 0 {
			if n >= len(iovs[0]) {
				n -= len(iovs[0])
				iovs = iovs[1:]
			} else {
				iovs[0] = iovs[0][n:]
				n = 0
			}
		}
	}
	return nil
}

// publish marks seq as fully copied, advances the published watermark over
// contiguous completed records and waits until it covers seq, so an Append
// never returns while an earlier record could still be missing after a
// crash (recovery cuts at the first hole; see doc.go).
func (j *Journal) publish(seq Seq) error {
	j.pubMu.Lock()
	defer j.pubMu.Unlock()
	if j.syncErr != nil {
		return j.syncErr
	}
	if seq == j.published+1 {
		p := seq
		for {
			if _, ok := j.done[p+1]; !ok {
				break
			}
			delete(j.done, p+1)
			p++
		}
		j.published = p
		j.pubA.Store(uint64(p))
		if j.pubWaiters > 0 {
			j.pubCond.Broadcast()
		}
	} else {
		j.done[seq] = struct{}{}
		j.pubWaiters++
		for j.published < seq && j.syncErr == nil {
			j.pubCond.Wait()
		}
		j.pubWaiters--
		if j.published < seq {
			return j.syncErr
		}
	}
	return nil
}

// rollLocked installs a new active segment able to hold a frame of fs bytes.
// Called with j.mu held.
func (j *Journal) rollLocked(fs int64) error {
	need := segHeaderSize + fs
	var s *segment
	if need <= j.segSize {
		// Wait for the background allocator rather than racing it for the
		// disk with a second 64 MiB zero-fill.
		select {
		case r := <-j.spare:
			s = r.seg
		default:
			if j.allocBusy.Load() {
				s = (<-j.spare).seg
			}
		}
	}
	if s == nil {
		var err error
		s, err = allocSegment(j.dir, j.allocID.Add(1), max(j.segSize, need))
		if err != nil {
			return err
		}
	}
	tmp := filepath.Join(j.dir, s.name)
	s.first = j.next
	s.name = segName(s.first)
	encodeSegHeader(s.data, s.first)
	if err := os.Rename(tmp, filepath.Join(j.dir, s.name)); err != nil {
		s.unmapClose()
		os.Remove(tmp)
		return fmt.Errorf("install segment %s: %w", s.name, err)
	}
	s.needDirSync.Store(true)
	j.segMu.Lock()
	j.segs = append(j.segs, s)
	j.segMu.Unlock()
	j.active, j.off = s, segHeaderSize
	j.kickAlloc()
	return nil
}

func (j *Journal) kickAlloc() {
	select {
	case j.allocKick <- struct{}{}:
	default:
	}
}

// allocLoop keeps one zero-filled spare segment ready so a rollover costs a
// rename, not 64 MiB of writes under the append lock.
func (j *Journal) allocLoop() {
	defer j.wg.Done()
	for {
		select {
		case <-j.stop:
			return
		case <-j.allocKick:
		}
		if len(j.spare) > 0 {
			continue
		}
		j.allocBusy.Store(true)
		s, err := allocSegment(j.dir, j.allocID.Add(1), j.segSize)
		if err != nil {
			// The appender that needs a segment retries synchronously and
			// returns its error (ENOSPC) to its caller.
			j.log.Warn("journal: preallocate next segment", logging.Err(err))
		}
		// spare is empty (only this goroutine fills it), so this never
		// blocks; a roller waiting on allocBusy receives it.
		j.spare <- allocResult{s, err}
		j.allocBusy.Store(false)
	}
}

// Sync returns when every record <= seq is durable (fdatasynced, and its
// segment's directory entry synced). Concurrent calls share fdatasyncs (group
// commit). A seq beyond LastSeq is treated as LastSeq.
func (j *Journal) Sync(seq Seq) error {
	if seq <= Seq(j.durA.Load()) {
		return nil
	}
	seq = min(seq, Seq(j.lastA.Load()))
	j.pubMu.Lock()
	defer j.pubMu.Unlock()
	for j.published < seq && j.syncErr == nil && !j.flushStopped {
		j.pubWaiters++
		j.pubCond.Wait()
		j.pubWaiters--
	}
	if j.syncWant < seq {
		j.syncWant = seq
	}
	select {
	case j.syncKick <- struct{}{}:
	default:
	}
	for j.durable < seq && j.syncErr == nil && !j.flushStopped {
		j.durCond.Wait()
	}
	switch {
	case j.syncErr != nil:
		return j.syncErr
	case j.durable < seq:
		return ErrClosed
	}
	return nil
}

// flushLoop is the only goroutine that syncs segment files.
func (j *Journal) flushLoop() {
	defer j.wg.Done()
	for {
		select {
		case <-j.syncKick:
			j.flushOnce(false)
		case <-j.stop:
			j.flushOnce(true)
			j.pubMu.Lock()
			j.flushStopped = true
			j.durCond.Broadcast()
			j.pubCond.Broadcast()
			j.pubMu.Unlock()
			return
		}
	}
}

// flushOnce makes everything published durable if a Sync asked for it (or
// force is set).
func (j *Journal) flushOnce(force bool) {
	j.pubMu.Lock()
	want, pub, dur, serr := j.syncWant, j.published, j.durable, j.syncErr
	j.pubMu.Unlock()
	if serr != nil || pub <= dur || (!force && want <= dur) {
		return
	}
	err := j.syncRange(dur+1, pub)
	j.pubMu.Lock()
	if err != nil {
		j.syncErr = fmt.Errorf("sync journal: %w", err)
		j.log.Error("journal: sync failed", logging.Err(err))
	} else {
		j.durable = pub
		j.durA.Store(uint64(pub))
	}
	j.durCond.Broadcast()
	j.pubMu.Unlock()
}

// syncRange fdatasyncs every segment holding records in [lo, hi].
func (j *Journal) syncRange(lo, hi Seq) error {
	segs, _ := j.acquire(lo, hi)
	defer releaseAll(segs)
	for _, s := range segs {
		start := time.Now()
		if err := unix.Fdatasync(int(s.f.Fd())); err != nil {
			return fmt.Errorf("fdatasync %s: %w", s.name, err)
		}
		j.m.fsyncs.Add(1)
		j.m.fsyncDur.Observe(time.Since(start).Seconds())
		if s.needDirSync.Load() {
			if err := fsutil.SyncDir(j.dir); err != nil {
				return fmt.Errorf("sync dir for %s: %w", s.name, err)
			}
			s.needDirSync.Store(false)
		}
	}
	return nil
}

// acquire returns, with a reference taken, the segments that may hold
// records in [lo, hi]; ok is false once the journal is closed.
func (j *Journal) acquire(lo, hi Seq) (out []*segment, ok bool) {
	j.segMu.Lock()
	defer j.segMu.Unlock()
	if j.segs == nil {
		return nil, false
	}
	for i, s := range j.segs {
		if s.first > hi {
			break
		}
		if i+1 < len(j.segs) && j.segs[i+1].first <= lo {
			continue
		}
		s.acquire()
		out = append(out, s)
	}
	return out, true
}

func releaseAll(segs []*segment) {
	for _, s := range segs {
		s.release()
	}
}

// LastSeq returns the last assigned seq.
func (j *Journal) LastSeq() Seq { return Seq(j.lastA.Load()) }

// PublishedSeq returns the highest seq such that it and every record before
// it are fully written (readable by Read).
func (j *Journal) PublishedSeq() Seq { return Seq(j.pubA.Load()) }

// DurableSeq returns the highest seq known to be durable.
func (j *Journal) DurableSeq() Seq { return Seq(j.durA.Load()) }

// FirstSeq returns the oldest seq still present, or 0 if there is none.
func (j *Journal) FirstSeq() Seq {
	j.segMu.Lock()
	first := j.firstSeg
	if len(j.segs) > 0 {
		first = j.segs[0].first
	}
	j.segMu.Unlock()
	if first > j.LastSeq() {
		return 0
	}
	return first
}

// Size returns the bytes of installed segment files (the one preallocated
// spare is not counted).
func (j *Journal) Size() int64 {
	j.segMu.Lock()
	defer j.segMu.Unlock()
	var n int64
	for _, s := range j.segs {
		n += s.size
	}
	return n
}

// UsedFrom returns the bytes written in the segments that hold records at or after seq (the
// whole of sealed segments, the used part of the active one): an upper bound, within one
// segment, of what the records from seq on occupy.
func (j *Journal) UsedFrom(seq Seq) int64 {
	j.mu.Lock()
	off := j.off
	active := j.active
	next := j.next
	j.mu.Unlock()
	j.segMu.Lock()
	defer j.segMu.Unlock()
	var n int64
	for i, s := range j.segs {
		last := next - 1
		if i+1 < len(j.segs) {
			last = j.segs[i+1].first - 1
		}
		if last < seq {
			continue
		}
		if s == active {
			n += off
		} else {
			n += s.size
		}
	}
	return n
}

// Read calls fn for each record in [from, to] in order, stopping at the
// published watermark (records still being written are not returned). The
// Record's Payload aliases the segment mapping and is valid only during fn.
// Read fails with ErrReleased if from is older than FirstSeq, and returns
// fn's error unchanged. Read takes no lock while fn runs.
func (j *Journal) Read(from, to Seq, fn func(r Record) error) error {
	from = max(from, 1)
	to = min(to, j.PublishedSeq())
	if from > to {
		return nil
	}
	segs, ok := j.acquire(from, to)
	defer releaseAll(segs)
	if !ok {
		return ErrClosed
	}
	if len(segs) == 0 || segs[0].first > from {
		return fmt.Errorf("read from %d: %w", from, ErrReleased)
	}
	want := from
	for i, s := range segs {
		off, expect := int64(segHeaderSize), s.first
		for want <= to {
			if i+1 < len(segs) && expect >= segs[i+1].first {
				break
			}
			rec, n, err := nextFrame(s.data, off, expect)
			if err != nil {
				if err == io.EOF && i+1 < len(segs) {
					break // sealed segment ended; the gap check below decides
				}
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					err = fmt.Errorf("%w: seq %d missing", ErrCRCMismatch, expect)
				}
				return fmt.Errorf("read segment %s offset %d: %w", s.name, off, err)
			}
			off += n
			expect++
			if rec.Seq < from {
				continue
			}
			if err := fn(rec); err != nil {
				return err
			}
			want = rec.Seq + 1
		}
		if want > to {
			break
		}
		if i+1 < len(segs) && expect != segs[i+1].first {
			return fmt.Errorf("read segment %s: %w: ends at %d, next starts at %d", s.name, ErrSeqGap, expect-1, segs[i+1].first)
		}
	}
	return nil
}

// Release deletes whole segments whose records are all <= upTo. It never
// deletes the active segment nor records that are not yet durable (upTo is
// capped at DurableSeq).
func (j *Journal) Release(upTo Seq) error {
	upTo = min(upTo, j.DurableSeq())
	j.segMu.Lock()
	var drop []*segment
	for len(j.segs) > 1 && j.segs[1].first-1 <= upTo {
		drop = append(drop, j.segs[0])
		j.segs = j.segs[1:]
	}
	j.segMu.Unlock()
	if len(drop) == 0 {
		return nil
	}
	var err error
	for _, s := range drop {
		if rerr := os.Remove(filepath.Join(j.dir, s.name)); rerr != nil && err == nil {
			err = fmt.Errorf("release segment %s: %w", s.name, rerr)
		}
		s.release()
	}
	if serr := fsutil.SyncDir(j.dir); serr != nil && err == nil {
		err = fmt.Errorf("release: sync dir: %w", serr)
	}
	return err
}

// Close waits for in-flight appends, makes everything durable, stops the
// background goroutines and unmaps the segments (readers still inside Read
// keep their segments mapped until they return). Close is idempotent.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	last := j.next - 1
	j.mu.Unlock()

	j.pubMu.Lock()
	for j.published < last {
		j.pubWaiters++
		j.pubCond.Wait()
		j.pubWaiters--
	}
	j.pubMu.Unlock()

	close(j.stop)
	j.wg.Wait()
	select {
	case r := <-j.spare:
		if r.seg != nil {
			r.seg.unmapClose()
			os.Remove(filepath.Join(j.dir, r.seg.name))
		}
	default:
	}
	j.segMu.Lock()
	segs := j.segs
	j.firstSeg = segs[0].first
	j.segs = nil
	j.segMu.Unlock()
	releaseAll(segs)
	j.pubMu.Lock()
	err := j.syncErr
	j.pubMu.Unlock()
	return err
}
