// Package replica is the receiving side of drfs replication: it keeps, for each volume, a plain
// directory tree mirroring the primary's source as of a change-log boundary, applies change logs
// atomically (undo first, then the change, then the new boundary recorded), and keeps undo data
// for recent boundaries so the volume can be rolled back to a recovery point.
//
// Layout under the replica directory DIR (see Layout):
//
//	DIR/V/data/              the volume's files, usable as a source after promotion
//	DIR/V/state/state.json   volume ID, generation, applied seq, recovery points
//	DIR/V/state/undo/        one undo file per kept recovery point (and the one being applied)
//	DIR/V/state/trash/       objects removed by kept logs, restored by their undo
package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"drfs/changelog"
	"drfs/internal/fsutil"
	"drfs/internal/logging"
	"drfs/journal"
	"drfs/wire"
)

// Errors a primary is told about. They are returned wrapped; match with errors.Is.
var (
	ErrGap            = errors.New("replica: change log does not follow the applied seq")
	ErrStale          = errors.New("replica: change log of an older generation")
	ErrVolumeMismatch = errors.New("replica: change log of another volume")
	ErrApply          = errors.New("replica: change log could not be applied")
	// ErrHistory refuses a primary's request that would discard or relabel recovery points:
	// the replica's past is changed only by its own operator.
	ErrHistory = errors.New("replica: refused: it would discard recovery points")
)

// pointName is the base name of p's undo file and trash directory.
func pointName(p wire.Point) string {
	if p.Undo != "" {
		return p.Undo
	}
	return fmt.Sprintf("%016x-%016x", p.From, p.To)
}

// Options tune a replica volume. Retention is the replica operator's alone: nothing a
// primary sends changes it, and no request of a primary drops a point younger than KeepFor.
type Options struct {
	KeepPoints int           // recovery points kept (at least this many)
	KeepFor    time.Duration // and every point younger than this, however many there are
	// Retention, if set, is consulted by a Server for the retention of each volume it opens
	// (drfs serve --config: a volume's own keep-points and keep-for), instead of KeepPoints
	// and KeepFor. Server.SetRetention replaces it while the server runs.
	Retention func(volume string) (keepPoints int, keepFor time.Duration)
	// Logger receives the volume's messages (with a volume attribute added); nil discards them.
	Logger *slog.Logger
	// MaxConcurrentLogs bounds the change logs a Server receives and applies at once
	// (default DefaultMaxConcurrentLogs).
	MaxConcurrentLogs int
	// PreparePrimary creates the primary state directory a promotion hands over (the
	// primary side's volume.Prepare). The replica decides what the state holds; writing it
	// is the primary side's business, so the replica does not depend on it. Nil: Promote
	// refuses.
	PreparePrimary func(wire.PrimaryState) error
}

// Volume is one volume on the replica side.
type Volume struct {
	name  string
	dir   string
	state string
	data  *tree
	opts  Options
	log   *slog.Logger
	lock  *os.File

	mu sync.Mutex
	st wire.State

	// crashAfter, when > 0, makes applyOps stop after that many ops as if the process died
	// there (tests only): the undo is left for OpenVolume to roll back.
	crashAfter int
}

// errCrash is the simulated death of a test's crashAfter.
var errCrash = errors.New("replica: simulated crash")

// OpenVolume opens (creating if needed) volume name under dir, rolling back a log whose
// application was interrupted.
func OpenVolume(dir, name string, opts Options) (*Volume, error) {
	if err := journal.ValidPath(name); err != nil || filepath.Base(name) != name {
		return nil, fmt.Errorf("bad volume name %q", name)
	}
	opts.KeepPoints = orDefaultKeepPoints(opts.KeepPoints)
	l := Layout{dir, name}
	v := &Volume{name: name, dir: l.Root(), opts: opts, log: logging.OrDiscard(opts.Logger).With("volume", name)}
	v.state = l.State()
	for _, d := range []string{v.state, filepath.Join(v.state, "undo"), filepath.Join(v.state, "trash")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	lock, err := os.OpenFile(filepath.Join(v.state, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("replica volume %s is in use by another drfs process", v.dir)
	}
	v.lock = lock
	if v.data, err = openTree(l.Data()); err != nil {
		lock.Close()
		return nil, err
	}
	if err := v.load(); err != nil {
		v.Close()
		return nil, err
	}
	if v.st.Name == "" {
		v.st.Name = name
	}
	if a := v.st.Applying; a != nil {
		v.log.Warn("rolling back a change log interrupted by a crash", "from", a.From, "to", a.To)
		if err := v.rollbackApplying(); err != nil {
			v.Close()
			return nil, fmt.Errorf("roll back interrupted log %d-%d: %w", a.From, a.To, err)
		}
	}
	return v, nil
}

// Close releases the volume.
func (v *Volume) Close() error {
	v.data.close()
	return v.lock.Close()
}

// Name returns the volume name.
func (v *Volume) Name() string { return v.name }

// DefaultKeepPoints is the retention count of a volume opened without one.
const DefaultKeepPoints = 24

func orDefaultKeepPoints(n int) int {
	if n <= 0 {
		return DefaultKeepPoints
	}
	return n
}

// Retention returns the volume's retention: at least keepPoints recovery points, and every
// point younger than keepFor.
func (v *Volume) Retention() (keepPoints int, keepFor time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.opts.KeepPoints, v.opts.KeepFor
}

// SetRetention changes the volume's retention (the replica operator's reload). It prunes
// nothing itself: points are pruned, by the retention of the moment, when the next change
// log is applied, as always.
func (v *Volume) SetRetention(keepPoints int, keepFor time.Duration) {
	keepPoints = orDefaultKeepPoints(keepPoints)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.opts.KeepPoints == keepPoints && v.opts.KeepFor == keepFor {
		return
	}
	v.log.Info("retention changed", "keep_points", keepPoints, "keep_for", keepFor,
		"was_keep_points", v.opts.KeepPoints, "was_keep_for", v.opts.KeepFor)
	v.opts.KeepPoints, v.opts.KeepFor = keepPoints, keepFor
}

// DataDir returns the directory holding the volume's files.
func (v *Volume) DataDir() string { return v.data.root }

// Touch records a primary's contact (its periodic state request) without a write.
func (v *Volume) Touch() {
	v.mu.Lock()
	v.st.LastContact = time.Now().UTC()
	v.mu.Unlock()
}

// ErrNotBound refuses a primary that is not the one a volume is bound to.
var ErrNotBound = errors.New("replica: volume is bound to another primary")

// Bind makes sure the volume is served to primary id: an unbound volume is bound to id
// durably (trust on first use), a volume bound to another primary refuses with ErrNotBound
// unless explicit (the replica operator's choice), which rebinds it.
func (v *Volume) Bind(id string, explicit bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.st.BoundPrimary == id:
		return nil
	case v.st.BoundPrimary != "" && !explicit:
		return fmt.Errorf("%w: volume %s is bound to primary %q, not %q", ErrNotBound, v.name, v.st.BoundPrimary, id)
	}
	old := v.st.BoundPrimary
	v.st.BoundPrimary = id
	if err := v.save(); err != nil {
		v.st.BoundPrimary = old
		return err
	}
	if old == "" {
		v.log.Info("bound to primary (first use)", "primary", id)
	} else {
		v.log.Info("rebound to another primary by the operator", "old", old, "primary", id)
	}
	return nil
}

// State returns a copy of the durable state.
func (v *Volume) State() wire.State {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.st
	s.Points = append([]wire.Point(nil), v.st.Points...)
	return s
}

func (v *Volume) load() error {
	st, err := readState(v.state)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	v.st = st
	return err
}

func readState(stateDir string) (wire.State, error) {
	var st wire.State
	b, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read %s: %w", filepath.Join(stateDir, stateFile), err)
	}
	return st, nil
}

// ReadState reads the durable state of volume name under dir without opening (or locking) the
// volume, for status tools while drfs serve holds it.
func ReadState(dir, name string) (wire.State, error) {
	st, err := readState(Layout{dir, name}.State())
	if errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("%s holds no volume %q: %w", dir, name, err)
	}
	return st, err
}

// save writes the state atomically and durably.
func (v *Volume) save() error {
	b, err := json.MarshalIndent(&v.st, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(v.state, stateFile), b, 0o600)
}

// Apply applies a change log atomically and returns the applied seq. A log already applied is
// a no-op; a log that does not start right after the applied seq is refused with ErrGap, one
// of an older generation with ErrStale, one of another volume with ErrVolumeMismatch. It
// returns only after the change is durable.
func (v *Volume) Apply(l *changelog.Log) (uint64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.st.VolumeID != "" && v.st.VolumeID != l.VolumeID {
		return v.st.Applied, fmt.Errorf("%w: log of volume %s, this replica holds volume %s", ErrVolumeMismatch, l.VolumeID, v.st.VolumeID)
	}
	if err := v.fenced(l.Generation); err != nil {
		return v.st.Applied, err
	}
	journalLog := l.Kind == changelog.KindJournal
	if journalLog {
		if l.ToSeq <= v.st.Applied && v.st.VolumeID != "" {
			return v.st.Applied, nil // re-delivered: already applied
		}
		if l.FromSeq != v.st.Applied+1 {
			return v.st.Applied, fmt.Errorf("%w: replica has applied up to seq %d, log covers %d-%d", ErrGap, v.st.Applied, l.FromSeq, l.ToSeq)
		}
	}
	if v.st.VolumeID == "" {
		v.st.VolumeID = l.VolumeID
	}
	v.st.Generation = l.Generation

	a := &wire.Applying{From: l.FromSeq, To: l.ToSeq}
	if journalLog {
		a.Undo = fmt.Sprintf("%016x-%016x.undo", l.FromSeq, l.ToSeq)
		a.Trash = fmt.Sprintf("%016x-%016x", l.FromSeq, l.ToSeq)
	} else {
		stamp := time.Now().UnixNano()
		a.Undo = fmt.Sprintf("resync-%d.undo", stamp)
		a.Trash = fmt.Sprintf("resync-%d", stamp)
	}
	v.st.Applying = a
	if err := v.save(); err != nil {
		return v.st.Applied, err
	}
	tolerant := !journalLog || l.FromSeq <= v.st.TolerantUntil
	undoBytes, err := v.applyOps(a, l.Ops, tolerant)
	if errors.Is(err, errCrash) {
		return v.st.Applied, err
	}
	if err != nil {
		v.log.Warn("apply log failed: rolling back", "from", l.FromSeq, "to", l.ToSeq, logging.Err(err))
		if rerr := v.rollbackApplying(); rerr != nil {
			return v.st.Applied, fmt.Errorf("%w: %v; and rollback failed: %v", ErrApply, err, rerr)
		}
		return v.st.Applied, fmt.Errorf("%w: %v", ErrApply, err)
	}
	if err := v.data.sync(); err != nil {
		return v.st.Applied, fmt.Errorf("sync replica data: %w", err)
	}
	now := time.Now().UTC()
	v.st.Applying = nil
	if journalLog {
		v.st.Applied = l.ToSeq
		v.st.AppliedCreated = l.Created
		if v.st.TolerantUntil > 0 && l.ToSeq >= v.st.TolerantUntil {
			v.st.TolerantUntil = 0
			v.st.Consistent = true
		}
		v.st.Points = append(v.st.Points, wire.Point{From: l.FromSeq, To: l.ToSeq, Created: l.Created, Applied: now, UndoBytes: undoBytes})
	} else if v.st.Applied > 0 && !v.st.Reversed {
		// A resync may rewrite any byte: what it replaced stays restorable, as the state at
		// the applied seq before it (see Point).
		v.st.Points = append(v.st.Points, wire.Point{From: v.st.Applied + 1, To: v.st.Applied, Created: l.Created, Applied: now,
			UndoBytes: undoBytes, Resync: true, Undo: a.Trash})
	} else {
		// An initial sync has no past; a reversed old primary's diverged state is what the
		// operator chose to overwrite.
		os.Remove(filepath.Join(v.state, "undo", a.Undo))
		os.RemoveAll(filepath.Join(v.state, "trash", a.Trash))
	}
	v.st.AppliedAt = now
	v.prune()
	if err := v.save(); err != nil {
		return v.st.Applied, err
	}
	return v.st.Applied, nil
}

// SyncComplete records that a resync finished with the primary's source state at least as new
// as seq: journal logs continue from seq+1 (when seq is past the applied seq, the resync covered
// everything up to it). Logs up to tolerantUntil overlap what the resync already copied and are
// applied tolerantly; the replica is consistent once it applied past tolerantUntil.
//
// With exact, the applied seq becomes seq even if it was higher: after a reverse, this side may
// have acknowledged records of the old generation that the resync replaced.
func (v *Volume) SyncComplete(volumeID string, generation, seq, tolerantUntil uint64, exact bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.st.VolumeID != "" && v.st.VolumeID != volumeID {
		return fmt.Errorf("%w: sync of volume %s, this replica holds volume %s", ErrVolumeMismatch, volumeID, v.st.VolumeID)
	}
	if err := v.fenced(generation); err != nil {
		return err
	}
	if exact && seq < v.st.Applied && !v.st.Reversed && len(v.st.Points) > 0 {
		return fmt.Errorf("%w: sync-complete would set the applied seq back from %d to %d over recovery points %s", ErrHistory, v.st.Applied, seq, pointList(v.st.Points))
	}
	v.st.VolumeID, v.st.Generation = volumeID, generation
	switch {
	case seq > v.st.Applied && len(v.st.Points) > 0:
		// The resync brought the tree to seq: the last point now ends there (its undo still
		// restores the state before it).
		last := &v.st.Points[len(v.st.Points)-1]
		last.Undo = pointName(*last)
		last.To = seq
		v.st.Applied = seq
	case seq > v.st.Applied || exact:
		// After a reverse the resync repaired everything since the common point: the
		// replica is exactly at seq, even if this side had acknowledged more before.
		v.st.Applied = seq
	}
	if v.st.Reversed {
		v.dropPoints(len(v.st.Points))
		v.st.Reversed = false
	}
	v.st.Diverged = nil
	if tolerantUntil > v.st.Applied {
		v.st.TolerantUntil = tolerantUntil
		v.st.Consistent = false
	} else {
		v.st.TolerantUntil = 0
		v.st.Consistent = true
	}
	v.st.AppliedAt = time.Now().UTC()
	return v.save()
}

// MarkInconsistent records that a resync began: until SyncComplete the tree is not a point in
// the primary's history.
func (v *Volume) MarkInconsistent(volumeID string, generation uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.st.VolumeID != "" && v.st.VolumeID != volumeID {
		return fmt.Errorf("%w: resync of volume %s, this replica holds volume %s", ErrVolumeMismatch, volumeID, v.st.VolumeID)
	}
	if err := v.fenced(generation); err != nil {
		return err
	}
	v.st.VolumeID, v.st.Generation = volumeID, generation
	v.st.Consistent = false
	return v.save()
}

// Points returns the recovery points, oldest first.
func (v *Volume) Points() []wire.Point { return v.State().Points }

// RollbackTo undoes every applied log after seq, which must be a recovery point boundary.
// Rolling back to the applied seq undoes resync logs applied since (the state at seq is the
// one before them).
func (v *Volume) RollbackTo(seq uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rollbackToLocked(seq)
}

func (v *Volume) rollbackToLocked(seq uint64) error {
	i := sort.Search(len(v.st.Points), func(i int) bool { return v.st.Points[i].From > seq })
	if i == len(v.st.Points) && seq == v.st.Applied {
		return nil
	}
	if i == len(v.st.Points) || v.st.Points[i].From != seq+1 {
		return fmt.Errorf("seq %d is not a recovery point (points: %s)", seq, pointList(v.st.Points))
	}
	for k := len(v.st.Points) - 1; k >= i; k-- {
		p := v.st.Points[k]
		name := pointName(p)
		if err := v.rollback(name+".undo", name); err != nil {
			return fmt.Errorf("roll back log %d-%d: %w", p.From, p.To, err)
		}
		v.st.Points = v.st.Points[:k]
		v.st.Applied = p.From - 1
		if err := v.save(); err != nil {
			return err
		}
	}
	return nil
}

func pointList(ps []wire.Point) string {
	if len(ps) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d..%d (%d points)", ps[0].From-1, ps[len(ps)-1].To, len(ps))
}

func (v *Volume) rollbackApplying() error {
	a := v.st.Applying
	if err := v.rollback(a.Undo, a.Trash); err != nil {
		return err
	}
	v.st.Applying = nil
	return v.save()
}

// rollback applies an undo file in reverse, syncs, and removes it and its trash.
func (v *Volume) rollback(undoName, trashName string) error {
	undoPath := filepath.Join(v.state, "undo", undoName)
	entries, err := readUndo(undoPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for i := len(entries) - 1; i >= 0; i-- {
		err := v.undoOne(entries[i])
		if errors.Is(err, ErrEscape) {
			// Nothing is ever applied through an escaping path: the op this entry
			// would undo was refused before it ran.
			continue
		}
		if err != nil {
			return fmt.Errorf("undo entry %d (%d %s): %w", i, entries[i].kind, entries[i].path, err)
		}
	}
	if err := v.data.sync(); err != nil {
		return err
	}
	os.Remove(undoPath)
	os.RemoveAll(filepath.Join(v.state, "trash", trashName))
	return nil
}

// prune drops recovery points beyond KeepPoints that are older than KeepFor. The count never
// removes a point younger than KeepFor, so a primary sending a flood of tiny logs cannot push
// the past out; a run of points sharing a From (a resync) goes whole or not at all.
func (v *Volume) prune() {
	n := 0
	for n < len(v.st.Points)-v.opts.KeepPoints {
		if v.opts.KeepFor > 0 && time.Since(v.st.Points[n].Applied) < v.opts.KeepFor {
			break
		}
		n++
	}
	for n > 0 && n < len(v.st.Points) && v.st.Points[n].From == v.st.Points[n-1].From {
		n--
	}
	v.dropPoints(n)
}

// protectedPoints counts the recovery points younger than KeepFor.
func (v *Volume) protectedPoints() int {
	n := 0
	for _, p := range v.st.Points {
		if v.opts.KeepFor > 0 && time.Since(p.Applied) < v.opts.KeepFor {
			n++
		}
	}
	return n
}

// dropPoints forgets the n oldest recovery points and deletes their undo data.
func (v *Volume) dropPoints(n int) {
	for _, p := range v.st.Points[:n] {
		name := pointName(p)
		os.Remove(filepath.Join(v.state, "undo", name+".undo"))
		os.RemoveAll(filepath.Join(v.state, "trash", name))
	}
	v.st.Points = append([]wire.Point(nil), v.st.Points[n:]...)
}
