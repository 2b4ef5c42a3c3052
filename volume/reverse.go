package volume

import (
	"fmt"
	"os"
	"time"

	"drfs/changelog"
	"drfs/internal/audit"
	"drfs/journal"
)

// Divergence is what an old primary holds that its replica never acknowledged: the records
// after the acknowledged seq (saved aside as a change log for forensics) and the extents they
// touched, which the new primary must overwrite when this side becomes its replica.
type Divergence struct {
	ID, Name, Source string
	Generation       uint64
	History          []GenRecord
	Acked            uint64   // the last seq the replica acknowledged: the common point
	Last             uint64   // the end of this side's journal
	Extents          []Extent // touched after Acked, plus extents already pending resync here
	LogFile          string   // the records Acked+1..Last as a change log ("" if none)
	LogBytes         int64
}

// Diverge recovers the volume in state (replaying its journal if it stopped uncleanly),
// saves its unacknowledged records as a change log in logDir, records the state as demoted,
// and returns what diverged. The volume must not be mounted.
func Diverge(state, logDir, reason string) (Divergence, error) {
	var d Divergence
	st, err := ReadStatus(state)
	if err != nil {
		return d, err
	}
	v, err := Open(Config{Source: st.Source, State: state, CheckpointInterval: -1, allowDemoted: true})
	if err != nil {
		return d, err
	}
	defer v.Close()
	d.ID, d.Name, d.Source, d.Generation, d.History = v.id, v.name, v.src, v.Generation(), v.History()
	d.Acked, _ = v.meta.Uint(KeyShipNext)
	d.Last = uint64(v.j.LastSeq())
	if d.Last > d.Acked {
		if first := uint64(v.j.FirstSeq()); first > d.Acked+1 {
			return d, fmt.Errorf("the journal starts at seq %d but the replica acknowledged only %d: the records in between are gone; reverse would lose track of them", first, d.Acked)
		}
		if d.Extents, err = v.ExtentsSince(journal.Seq(d.Acked+1), journal.Seq(d.Last), "changed on the old primary after its replica's last acknowledgement"); err != nil {
			return d, err
		}
		if err := os.MkdirAll(logDir, 0o700); err != nil {
			return d, err
		}
		if d.LogFile, d.LogBytes, err = v.saveLog(logDir, d.Acked+1, d.Last); err != nil {
			return d, fmt.Errorf("save the diverged records: %w", err)
		}
	}
	pending, err := v.meta.Resync()
	if err != nil {
		return d, err
	}
	d.Extents = append(d.Extents, pending...)
	if role, _ := v.meta.Role(); role == nil {
		if err := v.meta.Demote(RoleRecord{Reason: reason, Seq: d.Acked}); err != nil {
			return d, err
		}
	}
	v.Audit(audit.Entry{Action: "reverse", GenBefore: d.Generation, GenAfter: d.Generation, Point: d.Acked,
		Detail: fmt.Sprintf("%s; %d records after seq %d saved to %s; %d extents to resync", reason, d.Last-min(d.Last, d.Acked), d.Acked, d.LogFile, len(d.Extents))})
	return d, nil
}

// saveLog writes the records [from, to] as one change log file in dir.
func (v *Volume) saveLog(dir string, from, to uint64) (string, int64, error) {
	var ops []journal.Op
	err := v.j.Read(journal.Seq(from), journal.Seq(to), func(r journal.Record) error {
		if r.Type == journal.RecHot {
			return nil
		}
		op, err := journal.DecodeOp(r.Type, r.Payload)
		if err != nil {
			return err
		}
		if w, ok := op.(journal.OpWrite); ok {
			w.Data = append([]byte(nil), w.Data...)
			op = w
		}
		if x, ok := op.(journal.OpSetxattr); ok {
			x.Value = append([]byte(nil), x.Value...)
			op = x
		}
		ops = append(ops, op)
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	l := &changelog.Log{Header: changelog.Header{Kind: changelog.KindJournal, VolumeID: v.id, Generation: v.Generation(),
		FromSeq: from, ToSeq: to, Created: time.Now().UTC()}, Ops: changelog.Coalesce(ops)}
	path, st, err := changelog.WriteFile(dir, l)
	return path, st.EncodedBytes, err
}
