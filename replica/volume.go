// Package replica is the receiving side of drfs replication: it keeps, for each volume, a plain
// directory tree mirroring the primary's source as of a change-log boundary, applies change logs
// atomically (undo first, then the change, then the new boundary recorded), and keeps undo data
// for recent boundaries so the volume can be rolled back to a recovery point.
//
// Layout under the replica directory DIR:
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
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"drfs/changelog"
	"drfs/internal/fsutil"
	"drfs/journal"
	"drfs/volume"
)

// Errors a primary is told about. They are returned wrapped; match with errors.Is.
var (
	ErrGap            = errors.New("replica: change log does not follow the applied seq")
	ErrStale          = errors.New("replica: change log of an older generation")
	ErrVolumeMismatch = errors.New("replica: change log of another volume")
	ErrApply          = errors.New("replica: change log could not be applied")
)

// Point is a recovery point: the replica can be rolled back to seq From-1 by undoing the logs
// from this one onwards.
type Point struct {
	From      uint64    `json:"from_seq"`
	To        uint64    `json:"to_seq"`
	Created   time.Time `json:"created"` // when the primary cut the log
	Applied   time.Time `json:"applied"`
	UndoBytes int64     `json:"undo_bytes"`
}

// Applying marks a log whose application began but did not commit: its undo is rolled back at
// open.
type Applying struct {
	From, To uint64
	Undo     string // undo file name in state/undo
	Trash    string // trash dir name in state/trash
}

// State is the replica's durable record of a volume.
type State struct {
	VolumeID       string    `json:"volume_id"`
	Name           string    `json:"name"`
	Generation     uint64    `json:"generation"`
	Applied        uint64    `json:"applied_seq"`
	AppliedCreated time.Time `json:"applied_log_created"` // creation time of the last applied log
	AppliedAt      time.Time `json:"applied_at"`
	Consistent     bool      `json:"consistent"` // false while an initial sync or resync is incomplete
	// TolerantUntil: journal logs up to this seq overlap a resync that already reflects some
	// of their effects; they are applied tolerantly (an op whose effect is already there is
	// skipped), and the replica is consistent once it has applied past this seq.
	TolerantUntil uint64    `json:"tolerant_until,omitempty"`
	Applying      *Applying `json:"applying,omitempty"`
	Points        []Point   `json:"points"`
	LastError     string    `json:"last_error,omitempty"`

	// Failover state.
	Role        string             `json:"role"`              // "replica", or "promoted" once it became a primary
	History     []volume.GenRecord `json:"history,omitempty"` // generations, oldest first
	PrimaryDir  string             `json:"primary_state,omitempty"`
	Diverged    []volume.Extent    `json:"diverged,omitempty"` // set by reverse: extents the new primary must resync
	LastContact time.Time          `json:"last_contact"`       // last request from a primary
	// HandOver is set by a promote without --force while the primary is in contact: the
	// primary sees it, ships its last log and hands over with a planned failover whose key is
	// HandOverID. Both are cleared when that key is promoted, refused or aborted.
	HandOver   *time.Time `json:"hand_over_requested,omitempty"`
	HandOverID string     `json:"hand_over_id,omitempty"`
	// PromoteKey is the key of the planned failover that promoted this replica: the same
	// request again gets the same answer.
	PromoteKey string `json:"promote_key,omitempty"`
	// Promoting is set while a promotion prepares the primary state, so a crash halfway
	// leaves a state directory a retry may replace.
	Promoting *Promoting `json:"promoting,omitempty"`
	// Refused lists planned failovers this replica refused or aborted: it never promotes
	// under these keys (the newest maxRefused are kept).
	Refused []RefusedPromotion `json:"refused_promotions,omitempty"`
}

// Promoting is a promotion under way.
type Promoting struct {
	Key      string `json:"key,omitempty"`
	StateDir string `json:"state_dir"`
}

// RefusedPromotion is a planned failover key the replica will never promote under.
type RefusedPromotion struct {
	Key    string    `json:"key"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// Options tune a replica volume.
type Options struct {
	KeepPoints int           // recovery points kept (at least this many)
	KeepFor    time.Duration // and every point younger than this
	Logf       func(string, ...any)
}

// Volume is one volume on the replica side.
type Volume struct {
	name  string
	dir   string
	state string
	data  *tree
	opts  Options
	lock  *os.File

	mu sync.Mutex
	st State

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
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.KeepPoints <= 0 {
		opts.KeepPoints = 24
	}
	v := &Volume{name: name, dir: filepath.Join(dir, name), opts: opts}
	v.state = filepath.Join(v.dir, "state")
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
	if v.data, err = openTree(filepath.Join(v.dir, "data")); err != nil {
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
		opts.Logf("volume %s: rolling back change log %d-%d interrupted by a crash", name, a.From, a.To)
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

// DataDir returns the directory holding the volume's files.
func (v *Volume) DataDir() string { return v.data.root }

// Touch records a primary's contact (its periodic state request) without a write.
func (v *Volume) Touch() {
	v.mu.Lock()
	v.st.LastContact = time.Now().UTC()
	v.mu.Unlock()
}

// State returns a copy of the durable state.
func (v *Volume) State() State {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.st
	s.Points = append([]Point(nil), v.st.Points...)
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

func readState(stateDir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(stateDir, "state.json"))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read %s/state.json: %w", stateDir, err)
	}
	return st, nil
}

// ReadState reads the durable state of volume name under dir without opening (or locking) the
// volume, for status tools while drfs serve holds it.
func ReadState(dir, name string) (State, error) {
	st, err := readState(filepath.Join(dir, name, "state"))
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
	return fsutil.WriteFileAtomic(filepath.Join(v.state, "state.json"), b, 0o600)
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

	a := &Applying{From: l.FromSeq, To: l.ToSeq}
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
		v.opts.Logf("volume %s: apply log %d-%d: %v; rolling back", v.name, l.FromSeq, l.ToSeq, err)
		if rerr := v.rollbackApplying(); rerr != nil {
			return v.st.Applied, fmt.Errorf("%w: %v; and rollback failed: %v", ErrApply, err, rerr)
		}
		return v.st.Applied, fmt.Errorf("%w: %v", ErrApply, err)
	}
	if err := unix.Syncfs(v.data.fd); err != nil {
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
		v.st.Points = append(v.st.Points, Point{From: l.FromSeq, To: l.ToSeq, Created: l.Created, Applied: now, UndoBytes: undoBytes})
	} else {
		// Points before a resync would roll back to a state the resync repaired.
		v.dropPoints(len(v.st.Points))
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
	v.st.VolumeID, v.st.Generation = volumeID, generation
	if seq > v.st.Applied || exact {
		// After a reverse the resync repaired everything since the common point: the
		// replica is exactly at seq, even if this side had acknowledged more before.
		v.st.Applied = seq
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
	v.dropPoints(len(v.st.Points))
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
func (v *Volume) Points() []Point { return v.State().Points }

// RollbackTo undoes every applied log after seq, which must be a recovery point boundary.
func (v *Volume) RollbackTo(seq uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rollbackToLocked(seq)
}

func (v *Volume) rollbackToLocked(seq uint64) error {
	if seq == v.st.Applied {
		return nil
	}
	i := sort.Search(len(v.st.Points), func(i int) bool { return v.st.Points[i].From > seq })
	if i == len(v.st.Points) || v.st.Points[i].From != seq+1 {
		return fmt.Errorf("seq %d is not a recovery point (points: %s)", seq, pointList(v.st.Points))
	}
	for k := len(v.st.Points) - 1; k >= i; k-- {
		p := v.st.Points[k]
		name := fmt.Sprintf("%016x-%016x", p.From, p.To)
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

func pointList(ps []Point) string {
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
	if err := unix.Syncfs(v.data.fd); err != nil {
		return err
	}
	os.Remove(undoPath)
	os.RemoveAll(filepath.Join(v.state, "trash", trashName))
	return nil
}

// prune drops recovery points beyond KeepPoints that are older than KeepFor.
func (v *Volume) prune() {
	n := 0
	for n < len(v.st.Points)-v.opts.KeepPoints {
		if v.opts.KeepFor > 0 && time.Since(v.st.Points[n].Applied) < v.opts.KeepFor {
			break
		}
		n++
	}
	v.dropPoints(n)
}

// dropPoints forgets the n oldest recovery points and deletes their undo data.
func (v *Volume) dropPoints(n int) {
	for _, p := range v.st.Points[:n] {
		name := fmt.Sprintf("%016x-%016x", p.From, p.To)
		os.Remove(filepath.Join(v.state, "undo", name+".undo"))
		os.RemoveAll(filepath.Join(v.state, "trash", name))
	}
	v.st.Points = append([]Point(nil), v.st.Points[n:]...)
}
