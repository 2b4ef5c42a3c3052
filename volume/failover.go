package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"drfs/internal/audit"
	"drfs/internal/logging"
	"drfs/journal"
	"drfs/wire"
)

// HandOver is a planned failover in progress: recorded durably after the last log was
// shipped and before the replica is asked to promote, removed when the outcome is known. While
// it exists the volume refuses writes, across restarts too (see the protocol in
// shipper/doc.go).
type HandOver struct {
	Key        string    `json:"key"`        // the failover's idempotency key
	Generation uint64    `json:"generation"` // this side's generation; the replica becomes Generation+1
	Seq        uint64    `json:"seq"`        // the replica applied every record up to Seq; none follows
	Time       time.Time `json:"time"`
	Replica    string    `json:"replica"`
}

// HandOver returns the planned failover in progress, nil if none.
func (m *Meta) HandOver() (*HandOver, error) {
	b, err := m.get(keyHandOver)
	if err != nil || b == nil {
		return nil, err
	}
	var h HandOver
	return &h, json.Unmarshal(b, &h)
}

// RecordHandOver records durably that the replica is about to be asked to promote.
func (m *Meta) RecordHandOver(h HandOver) error { return m.setJSON(keyHandOver, h) }

// ClearHandOver records that the replica did not and will not promote under the hand-over's
// key: this side stays the primary.
func (m *Meta) ClearHandOver() error { return m.del(keyHandOver) }

// GenRecord is one generation of a volume's history (see wire.GenRecord).
type GenRecord = wire.GenRecord

// RoleRecord marks a state directory that must no longer be mounted as a primary.
type RoleRecord struct {
	Role       string    `json:"role"` // demoted
	Time       time.Time `json:"time"`
	Reason     string    `json:"reason"`
	Generation uint64    `json:"generation"` // the generation that superseded this one
	Seq        uint64    `json:"seq"`        // the last seq this side holds in common with it
}

// ErrDemoted is returned by Open for a state directory that was demoted.
var ErrDemoted = errors.New("volume: demoted")

// History returns the volume's generation history.
func (m *Meta) History() ([]GenRecord, error) {
	b, err := m.get(keyHistory)
	if err != nil || b == nil {
		return nil, err
	}
	var h []GenRecord
	return h, json.Unmarshal(b, &h)
}

func (m *Meta) setJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return m.set(key, b)
}

// Role returns the role record, nil for an ordinary primary.
func (m *Meta) Role() (*RoleRecord, error) {
	b, err := m.get(keyRole)
	if err != nil || b == nil {
		return nil, err
	}
	var r RoleRecord
	return &r, json.Unmarshal(b, &r)
}

// Demote records that this state must not be mounted as a primary any more, and ends a
// hand-over in progress, in one transaction.
func (m *Meta) Demote(r RoleRecord) error {
	r.Role = "demoted"
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return m.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte(keyRole), b); err != nil {
			return err
		}
		return txn.Delete([]byte(keyHandOver))
	})
}

// PrepareConfig describes the primary state a promotion creates for a replica's data (see
// wire.PrimaryState).
type PrepareConfig = wire.PrimaryState

// Prepare creates a state directory for c.Source as the primary of a promoted volume: same
// volume ID, the new generation, and a journal that continues at Seq+1.
func Prepare(c PrepareConfig) error {
	src, err := realPath(c.Source)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(c.State, "meta")); err == nil {
		return fmt.Errorf("%s already holds a volume state; choose another --state", c.State)
	}
	if err := os.MkdirAll(c.State, 0o700); err != nil {
		return err
	}
	lock, err := lockState(c.State)
	if err != nil {
		return err
	}
	defer lock.Close()
	m, err := OpenMeta(filepath.Join(c.State, "meta"))
	if err != nil {
		return err
	}
	defer m.Close()
	for k, v := range map[string]string{keyVolumeID: c.ID, keyVolumeName: c.Name, keySource: src} {
		if err := m.set(k, []byte(v)); err != nil {
			return err
		}
	}
	steps := []error{
		m.SetUint(keyGeneration, c.Generation),
		m.SetCheckpoint(c.Seq),
		m.SetUint(KeyShipNext, c.Seq),
		m.setJSON(keyHistory, c.History),
		m.AddResync(c.Resync),
	}
	if err := errors.Join(steps...); err != nil {
		return fmt.Errorf("record promoted state: %w", err)
	}
	files, err := walkSource(src)
	if err != nil {
		return err
	}
	return m.ReplaceFiles(files)
}

// History returns the volume's generation history (a volume created before generations were
// recorded has the implicit generation 1 from seq 1).
func (v *Volume) History() []GenRecord {
	h, _ := v.meta.History()
	if len(h) == 0 {
		h = []GenRecord{{Generation: 1, StartSeq: 1, Action: "create"}}
	}
	return h
}

// Pause blocks every mutation of the volume until the returned resume is called: guests see a
// pause, not an error. Used to ship a last log at a fixed seq.
func (v *Volume) Pause() (resume func()) {
	v.opLock.Lock()
	return v.opLock.Unlock
}

// SetReadOnly makes every later mutation fail with EROFS (after a planned failover this side
// is no longer the primary). reason is logged and shown.
func (v *Volume) SetReadOnly(reason string) {
	v.readOnly.Store(&reason)
	v.log.Warn("volume is read-only from now on", "reason", reason)
}

// Fence makes every later mutation fail with EROFS until Unfence: a planned failover's
// outcome is open, and this side must not take a write the replica may never see. Failing
// at once (rather than blocking) bounds the guest's pause; a hypervisor set to stop a VM on
// a write error (QEMU werror=stop) pauses the guest itself until the operator resumes it.
func (v *Volume) Fence(reason string) {
	v.fenced.Store(&reason)
	v.log.Warn("volume refuses writes until the failover's outcome is known", "reason", reason)
}

// Unfence lets mutations through again (the replica refused the failover for good).
func (v *Volume) Unfence() {
	if v.fenced.Swap(nil) != nil {
		v.log.Info("volume takes writes again")
	}
}

// Writable returns EROFS once the volume was made read-only or while it is fenced.
func (v *Volume) Writable() error {
	if v.readOnly.Load() != nil || v.fenced.Load() != nil {
		return syscall.EROFS
	}
	return nil
}

// ReadOnlyReason says why the volume refuses writes, "" when it takes them.
func (v *Volume) ReadOnlyReason() string {
	if r := v.readOnly.Load(); r != nil {
		return *r
	}
	if r := v.fenced.Load(); r != nil {
		return *r
	}
	return ""
}

// ExtentsSince folds the records in [from, to] into the extents they touched (data records at
// 4 MiB granularity, anything else as its whole object): what a block-hash resync must compare
// to reproduce their effect without the records themselves.
func (v *Volume) ExtentsSince(from, to journal.Seq, reason string) ([]Extent, error) {
	return ExtentsOf(v.j, from, to, reason)
}

// ExtentsOf is ExtentsSince for any journal.
func ExtentsOf(j *journal.Journal, from, to journal.Seq, reason string) ([]Extent, error) {
	exts := map[string]*Extent{}
	var order []string
	add := func(p string, off, n int64) {
		k := fmt.Sprintf("%s\x00%d", p, off)
		if e, ok := exts[k]; ok {
			if n < 0 || (e.Len >= 0 && n > e.Len) {
				e.Len = n
			}
			return
		}
		exts[k] = &Extent{Path: p, Off: off, Len: n, Reason: reason}
		order = append(order, k)
	}
	const gran = 4 << 20
	if to < from {
		return nil, nil
	}
	err := j.Read(from, to, func(r journal.Record) error {
		if r.Type == journal.RecHot {
			return nil
		}
		op, err := journal.DecodeOp(r.Type, r.Payload)
		if err != nil {
			return fmt.Errorf("seq %d: %w", r.Seq, err)
		}
		switch o := op.(type) {
		case journal.OpWrite:
			if len(o.Data) == 0 {
				return nil
			}
			for b := o.Off / gran; b <= (o.Off+int64(len(o.Data))-1)/gran; b++ {
				add(o.Path, b*gran, gran)
			}
		case journal.OpRename:
			add(o.OldPath, 0, -1) // gone from there too
			add(o.NewPath, 0, -1)
		default:
			add(op.Changed(), 0, -1)
		}
		return nil
	})
	out := make([]Extent, 0, len(order))
	for _, k := range order {
		out = append(out, *exts[k])
	}
	return out, err
}

// Audit appends e, completed with who and when and this volume's identity, to the volume's
// audit log.
func (v *Volume) Audit(e audit.Entry) {
	e.Volume, e.VolumeID = v.name, v.id
	if err := audit.Append(filepath.Join(v.StateDir(), audit.FileName), e.Who()); err != nil {
		v.log.Warn("audit", logging.Err(err))
	}
}
