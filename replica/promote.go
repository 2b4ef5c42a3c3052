package replica

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"drfs/internal/audit"
	"drfs/wire"
)

// fenced refuses a request of a primary at generation gen: an older generation, or any
// primary at all once this replica was promoted. The error names the promotion, so the old
// primary can say why it stopped. Called with v.mu held.
func (v *Volume) fenced(gen uint64) error {
	v.st.LastContact = time.Now().UTC()
	if v.st.Role == wire.RolePromoted || gen < v.st.Generation {
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

// ErrPromoteRefused is a planned failover the replica refused: its key is recorded, and the
// same key is refused for ever, so the primary may safely go on as the primary.
var ErrPromoteRefused = errors.New("replica: promotion refused")

// maxRefused bounds the refused keys kept in the state.
const maxRefused = 64

// refusedKey reports whether key was refused or aborted.
func (v *Volume) refusedKey(key string) (wire.RefusedPromotion, bool) {
	for _, r := range v.st.Refused {
		if r.Key == key {
			return r, true
		}
	}
	return wire.RefusedPromotion{}, false
}

// refuseLocked records durably that key never promotes, and returns the refusal; if the
// record cannot be saved the key is not dead yet and cause is returned as a plain error.
func (v *Volume) refuseLocked(key string, cause error) error {
	if _, ok := v.refusedKey(key); !ok {
		v.st.Refused = append(v.st.Refused, wire.RefusedPromotion{Key: key, Reason: cause.Error(), Time: time.Now().UTC()})
		if n := len(v.st.Refused); n > maxRefused {
			v.st.Refused = append([]wire.RefusedPromotion(nil), v.st.Refused[n-maxRefused:]...)
		}
	}
	if v.st.HandOverID == key {
		v.st.HandOver, v.st.HandOverID = nil, ""
	}
	if err := v.save(); err != nil {
		return fmt.Errorf("%w (and recording the refusal failed: %v)", cause, err)
	}
	return fmt.Errorf("%w: %w", ErrPromoteRefused, cause)
}

// promotedResult answers a repeated request of the failover that promoted this replica.
func (v *Volume) promotedResult() wire.PromoteResult {
	res := wire.PromoteResult{Volume: v.name, Source: v.data.root, Generation: v.st.Generation, State: v.st.PrimaryDir}
	if n := len(v.st.History); n > 0 {
		res.Seq = v.st.History[n-1].StartSeq - 1
	}
	return res
}

// newHandOverID names a hand-over request.
func newHandOverID() string {
	var b [12]byte
	rand.Read(b[:])
	return "ho-" + hex.EncodeToString(b[:])
}

// AbortPromotion makes sure the planned failover key never promotes this replica. If it
// already did, the promotion's result is returned (Aborted false) and the caller must step
// down; otherwise the key is recorded as refused before Aborted is returned. The answer is the
// same however often it is asked.
func (v *Volume) AbortPromotion(key string) (wire.PromoteResult, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	res := wire.PromoteResult{Volume: v.name, Source: v.data.root}
	switch {
	case key == "":
		return res, errors.New("abort needs the failover's key")
	case v.st.Role == wire.RolePromoted && v.st.PromoteKey == key:
		return v.promotedResult(), nil
	case v.st.Role == wire.RolePromoted:
		return res, fmt.Errorf("%w: %s", ErrStale, v.promotionText(v.st.Generation-1))
	}
	if _, ok := v.refusedKey(key); ok {
		res.Aborted = true
		return res, nil
	}
	if p := v.st.Promoting; p != nil && p.Key == key {
		// A promotion under this key was interrupted before it committed.
		if err := os.RemoveAll(p.StateDir); err != nil {
			return res, err
		}
		v.st.Promoting = nil
	}
	if err := v.refuseLocked(key, errors.New("aborted by the primary")); !errors.Is(err, ErrPromoteRefused) {
		return res, err
	}
	res.Aborted = true
	return res, nil
}

// handOverStale is how long a hand-over request may wait for its primary before a new request
// replaces it: longer than a hand-over's pause bound and drfs promote's wait.
const handOverStale = 90 * time.Second

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
func (v *Volume) Promote(o wire.PromoteOptions) (wire.PromoteResult, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := &v.st
	res := wire.PromoteResult{Volume: v.name, Source: v.data.root}
	key := ""
	if o.Planned {
		key = o.Key
	}
	if key != "" {
		switch r, refused := v.refusedKey(key); {
		case st.Role == wire.RolePromoted && st.PromoteKey == key:
			return v.promotedResult(), nil // the same request again: the same answer
		case refused:
			return res, fmt.Errorf("%w: failover %s was refused at %s: %s", ErrPromoteRefused, key, r.Time.Format(time.RFC3339), r.Reason)
		}
	}
	var refusal error
	switch {
	case st.VolumeID == "":
		refusal = errors.New("this replica holds no volume yet")
	case st.Role == wire.RolePromoted && key != "":
		return res, fmt.Errorf("%w: %s", ErrStale, v.promotionText(st.Generation-1))
	case st.Role == wire.RolePromoted:
		return res, fmt.Errorf("volume %s is already promoted (generation %d); its primary state is %s", v.name, st.Generation, st.PrimaryDir)
	case !st.Consistent && !o.Force:
		refusal = errors.New("the replica is not consistent (an initial sync or resync is incomplete): promoting it would expose a tree that never existed on the primary; use --force to do it anyway")
	case o.Planned && st.Applied != o.ExpectSeq:
		refusal = fmt.Errorf("planned failover: the primary shipped up to seq %d but this replica applied %d", o.ExpectSeq, st.Applied)
	case o.Planned && (o.Point != nil || o.Time != nil):
		refusal = fmt.Errorf("%w: a planned failover promotes the latest state; rolling back is for drfs promote on the replica host", ErrHistory)
	case o.Planned && st.HandOver == nil && v.protectedPoints() > 0:
		// Promotion discards the recovery points. A primary may hand over when this site's
		// operator asked for it (drfs promote), never on its own while points are inside
		// the retention: a compromised primary could erase the past that way.
		refusal = fmt.Errorf("%w: promotion would discard %d recovery points younger than %s; run drfs promote on the replica host to have the primary hand over",
			ErrHistory, v.protectedPoints(), v.opts.KeepFor)
	case !o.Force && !o.Planned && time.Since(st.LastContact) < contactWindow && (o.Point != nil || o.Time != nil):
		// A hand-over promotes the latest state and discards the points: it must not stand
		// in for a request to roll back.
		return res, fmt.Errorf("the primary was in contact %s ago; a hand-over would promote the latest state, not an older point: promote with --force to roll back (the old primary is fenced when it returns)",
			time.Since(st.LastContact).Round(time.Second))
	case !o.Force && !o.Planned && time.Since(st.LastContact) < contactWindow:
		now := time.Now().UTC()
		if st.HandOverID == "" || st.HandOver == nil || now.Sub(*st.HandOver) > handOverStale {
			// A request no primary answered in that time (it crashed before answering, say)
			// is replaced: a primary acts on each ID once. HandOver is when the ID was made.
			st.HandOverID, st.HandOver = newHandOverID(), &now
		}
		if err := v.save(); err != nil {
			return res, err
		}
		return res, fmt.Errorf("%w: it was in contact %s ago; it will ship its last log and promote this replica with zero loss at its next contact (or promote with --force if it is really lost)",
			ErrHandOver, time.Since(st.LastContact).Round(time.Second))
	}
	if refusal != nil {
		if key != "" {
			return res, v.refuseLocked(key, refusal)
		}
		return res, refusal
	}
	res, err := v.promoteLocked(o, key)
	if err != nil && key != "" {
		return res, v.refuseLocked(key, err)
	}
	return res, err
}

// promoteLocked performs a promotion Promote accepted. Called with v.mu held.
func (v *Volume) promoteLocked(o wire.PromoteOptions, key string) (wire.PromoteResult, error) {
	st := &v.st
	res := wire.PromoteResult{Volume: v.name, Source: v.data.root}
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
	var exts []wire.Extent
	for k := len(st.Points) - 1; rollback && k >= 0 && st.Points[k].From > target; k-- {
		p := st.Points[k]
		e, err := v.undoExtents(pointName(p) + ".undo")
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
		hist = []wire.GenRecord{{Generation: max(st.Generation, 1), StartSeq: 1, Action: wire.ActionCreate}}
	}
	action := wire.ActionPromote
	if o.Planned {
		action = wire.ActionFailover
	}
	hist = append(hist, wire.GenRecord{Generation: gen, StartSeq: target + 1, Time: time.Now().UTC(), Host: host, Action: action, Forced: o.Force})
	stateDir := o.StateDir
	if stateDir == "" {
		stateDir = v.layout().Primary()
	}
	if p := st.Promoting; p != nil && p.StateDir == stateDir {
		// An earlier promotion crashed while preparing this directory: start it afresh.
		if err := os.RemoveAll(stateDir); err != nil {
			return res, err
		}
	} else if _, err := os.Stat(filepath.Join(stateDir, "meta")); err == nil {
		return res, fmt.Errorf("%s already holds a volume state; choose another --state-out", stateDir)
	}
	st.Promoting = &wire.Promoting{Key: key, StateDir: stateDir}
	if err := v.save(); err != nil {
		return res, err
	}
	if v.opts.PreparePrimary == nil {
		return res, errors.New("prepare primary state: this replica was opened without a way to prepare one")
	}
	if err := v.opts.PreparePrimary(wire.PrimaryState{
		State: stateDir, Source: v.data.root, Name: v.name, ID: st.VolumeID,
		Generation: gen, Seq: target, History: hist, Resync: exts,
	}); err != nil {
		return res, fmt.Errorf("prepare primary state: %w", err)
	}
	before := st.Generation
	st.Generation, st.History, st.Role, st.PrimaryDir = gen, hist, wire.RolePromoted, stateDir
	st.HandOver, st.HandOverID, st.Promoting, st.PromoteKey = nil, "", nil, key
	v.dropPoints(len(st.Points))
	if err := v.save(); err != nil {
		return res, err
	}
	e := audit.Entry{Action: string(action), Volume: v.name, VolumeID: st.VolumeID, GenBefore: before, GenAfter: gen, Point: target, Forced: o.Force,
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
func (v *Volume) undoExtents(name string) ([]wire.Extent, error) {
	entries, err := readUndo(filepath.Join(v.state, "undo", name))
	if err != nil {
		return nil, err
	}
	var out []wire.Extent
	for _, e := range entries {
		switch e.kind {
		case undoBytes:
			n := int64(len(e.data))
			if e.flags == 1 {
				n = e.size
			}
			out = append(out, wire.Extent{Path: e.path, Off: e.off, Len: n, Reason: "rolled back by promotion"})
		case undoRename, undoMoveBack:
			out = append(out, wire.Extent{Path: e.path, Len: -1, Reason: "rolled back by promotion"})
			if e.kind == undoRename {
				out = append(out, wire.Extent{Path: e.other, Len: -1, Reason: "rolled back by promotion"})
			}
		default:
			out = append(out, wire.Extent{Path: e.path, Len: -1, Reason: "rolled back by promotion"})
		}
	}
	return out, nil
}
