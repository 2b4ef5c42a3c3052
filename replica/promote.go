package replica

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"drfs/internal/audit"
	"drfs/volume"
)

// fenced refuses a request of a primary at generation gen: an older generation, or any
// primary at all once this replica was promoted. The error names the promotion, so the old
// primary can say why it stopped. Called with v.mu held.
func (v *Volume) fenced(gen uint64) error {
	v.st.LastContact = time.Now().UTC()
	if v.st.Role == "promoted" || gen < v.st.Generation {
		return fmt.Errorf("%w: %s", ErrStale, v.promotionText(gen))
	}
	return nil
}

func (v *Volume) promotionText(gen uint64) string {
	if len(v.st.History) > 0 {
		h := v.st.History[len(v.st.History)-1]
		forced := ""
		if h.Forced {
			forced = " (forced)"
		}
		return fmt.Sprintf("volume %s was promoted%s to generation %d on %s at %s, from seq %d; this primary is at generation %d and is fenced",
			v.name, forced, h.Generation, h.Host, h.Time.Format(time.RFC3339), h.StartSeq-1, gen)
	}
	return fmt.Sprintf("the replica is at generation %d, this primary at %d", v.st.Generation, gen)
}

// PromoteOptions select the recovery point and how careful to be.
type PromoteOptions struct {
	Point     *uint64    // roll back to this seq (a recovery point); nil: the latest
	Time      *time.Time // or to the newest point at or before this time
	Force     bool       // the old primary cannot be told (it is lost)
	Planned   bool       // the old primary asked for it, after shipping its last log
	ExpectSeq uint64     // planned: the seq the primary shipped last; must equal applied
	StateDir  string     // where to create the primary state (default DIR/V/primary)
}

// PromoteResult tells the operator what happened and what to run next.
type PromoteResult struct {
	Volume     string `json:"volume"`
	Generation uint64 `json:"generation"`
	Seq        uint64 `json:"seq"`
	RolledBack int    `json:"rolled_back_logs"`
	Source     string `json:"source"`
	State      string `json:"state"`
}

// contactWindow is how recently a primary must have been heard from to count as alive.
const contactWindow = 60 * time.Second

// ErrHandOver means the primary is alive: instead of promoting over its head, the replica
// asked it to hand over (a planned failover it runs itself); the promotion happens when it
// does.
var ErrHandOver = errors.New("replica: asked the primary to hand over")

// Promote turns this replica into the primary of a new generation: it rolls back to the chosen
// recovery point, records the generation (so the old primary is fenced from now on), and
// prepares a primary state for DataDir. Without Force or Planned it refuses while the old
// primary is still in contact.
func (v *Volume) Promote(o PromoteOptions) (PromoteResult, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := &v.st
	res := PromoteResult{Volume: v.name, Source: v.data.root}
	switch {
	case st.VolumeID == "":
		return res, errors.New("this replica holds no volume yet")
	case st.Role == "promoted":
		return res, fmt.Errorf("volume %s is already promoted (generation %d); its primary state is %s", v.name, st.Generation, st.PrimaryDir)
	case !st.Consistent && !o.Force:
		return res, errors.New("the replica is not consistent (an initial sync or resync is incomplete): promoting it would expose a tree that never existed on the primary; use --force to do it anyway")
	case o.Planned && st.Applied != o.ExpectSeq:
		return res, fmt.Errorf("planned failover: the primary shipped up to seq %d but this replica applied %d", o.ExpectSeq, st.Applied)
	case o.Planned && (o.Point != nil || o.Time != nil):
		return res, fmt.Errorf("%w: a planned failover promotes the latest state; rolling back is for drfs promote on the replica host", ErrHistory)
	case o.Planned && st.HandOver == nil && v.protectedPoints() > 0:
		// Promotion discards the recovery points. A primary may hand over when this site's
		// operator asked for it (drfs promote), never on its own while points are inside
		// the retention: a compromised primary could erase the past that way.
		return res, fmt.Errorf("%w: promotion would discard %d recovery points younger than %s; run drfs promote on the replica host to have the primary hand over",
			ErrHistory, v.protectedPoints(), v.opts.KeepFor)
	case !o.Force && !o.Planned && time.Since(st.LastContact) < contactWindow && (o.Point != nil || o.Time != nil):
		// A hand-over promotes the latest state and discards the points: it must not stand
		// in for a request to roll back.
		return res, fmt.Errorf("the primary was in contact %s ago; a hand-over would promote the latest state, not an older point: promote with --force to roll back (the old primary is fenced when it returns)",
			time.Since(st.LastContact).Round(time.Second))
	case !o.Force && !o.Planned && time.Since(st.LastContact) < contactWindow:
		now := time.Now().UTC()
		st.HandOver = &now
		if err := v.save(); err != nil {
			return res, err
		}
		return res, fmt.Errorf("%w: it was in contact %s ago; it will ship its last log and promote this replica with zero loss at its next contact (or promote with --force if it is really lost)",
			ErrHandOver, time.Since(st.LastContact).Round(time.Second))
	}
	target := st.Applied
	if o.Time != nil {
		target = v.pointAt(*o.Time)
	}
	if o.Point != nil {
		target = *o.Point
	}
	// The logs undone here reached the old primary too: their extents differ between the two
	// sides and must be compared when the old primary is reversed into a replica. An explicit
	// point at the applied seq undoes the resync logs applied since (see RollbackTo).
	rollback := target != st.Applied || o.Point != nil
	var exts []volume.Extent
	for k := len(st.Points) - 1; rollback && k >= 0 && st.Points[k].From > target; k-- {
		p := st.Points[k]
		e, err := v.undoExtents(p.name() + ".undo")
		if err != nil {
			return res, err
		}
		exts = append(exts, e...)
		res.RolledBack++
	}
	if rollback {
		if err := v.rollbackToLocked(target); err != nil {
			return res, err
		}
	}
	host, _ := os.Hostname()
	gen := max(st.Generation, 1) + 1
	hist := st.History
	if len(hist) == 0 {
		hist = []volume.GenRecord{{Generation: max(st.Generation, 1), StartSeq: 1, Action: "create"}}
	}
	action := "promote"
	if o.Planned {
		action = "failover"
	}
	hist = append(hist, volume.GenRecord{Generation: gen, StartSeq: target + 1, Time: time.Now().UTC(), Host: host, Action: action, Forced: o.Force})
	stateDir := o.StateDir
	if stateDir == "" {
		stateDir = filepath.Join(v.dir, "primary")
	}
	if err := volume.Prepare(volume.PrepareConfig{
		State: stateDir, Source: v.data.root, Name: v.name, ID: st.VolumeID,
		Generation: gen, Seq: target, History: hist, Resync: exts,
	}); err != nil {
		return res, fmt.Errorf("prepare primary state: %w", err)
	}
	before := st.Generation
	st.Generation, st.History, st.Role, st.PrimaryDir = gen, hist, "promoted", stateDir
	st.HandOver = nil
	v.dropPoints(len(st.Points))
	if err := v.save(); err != nil {
		return res, err
	}
	e := audit.Entry{Action: action, Volume: v.name, VolumeID: st.VolumeID, GenBefore: before, GenAfter: gen, Point: target, Forced: o.Force,
		Detail: fmt.Sprintf("rolled back %d logs; primary state %s", res.RolledBack, stateDir)}.Who()
	errs := errors.Join(audit.Append(filepath.Join(v.state, audit.FileName), e), audit.Append(filepath.Join(stateDir, audit.FileName), e))
	res.Generation, res.Seq, res.State = gen, target, stateDir
	return res, errs
}

// pointAt returns the newest recovery point whose state the replica held at or before t, by the
// replica's own clock (the time each log was applied). The times a primary stamps on its logs
// are not trusted here: a compromised primary could stamp what it sends after an attack with
// old times and steer a promote --time to the attacked state.
func (v *Volume) pointAt(t time.Time) uint64 {
	st := &v.st
	n := len(st.Points)
	if n == 0 || !st.Points[n-1].Applied.After(t) {
		return st.Applied
	}
	for k := n - 1; k >= 1; k-- {
		// The state before Points[k] is the one Points[k-1] produced, held from its Applied.
		if !st.Points[k-1].Applied.After(t) {
			return st.Points[k].From - 1
		}
	}
	return st.Points[0].From - 1
}

// undoExtents lists what an undo file restores, as extents.
func (v *Volume) undoExtents(name string) ([]volume.Extent, error) {
	entries, err := readUndo(filepath.Join(v.state, "undo", name))
	if err != nil {
		return nil, err
	}
	var out []volume.Extent
	for _, e := range entries {
		switch e.kind {
		case undoBytes:
			n := int64(len(e.data))
			if e.flags == 1 {
				n = e.size
			}
			out = append(out, volume.Extent{Path: e.path, Off: e.off, Len: n, Reason: "rolled back by promotion"})
		case undoRename, undoMoveBack:
			out = append(out, volume.Extent{Path: e.path, Len: -1, Reason: "rolled back by promotion"})
			if e.kind == undoRename {
				out = append(out, volume.Extent{Path: e.other, Len: -1, Reason: "rolled back by promotion"})
			}
		default:
			out = append(out, volume.Extent{Path: e.path, Len: -1, Reason: "rolled back by promotion"})
		}
	}
	return out, nil
}
