package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"drfs/journal"
)

// Status is what `drfs status` shows about a primary volume.
type Status struct {
	Volume          string   `json:"volume"`
	VolumeID        string   `json:"volume_id"`
	Role            string   `json:"role"`
	Mounted         bool     `json:"mounted"`
	Mountpoint      string   `json:"mountpoint,omitempty"`
	Source          string   `json:"source"`
	JournalSeq      uint64   `json:"journal_seq"`
	JournalFirstSeq uint64   `json:"journal_first_seq"`
	DurableSeq      uint64   `json:"durable_seq"`
	CheckpointSeq   uint64   `json:"checkpoint_seq"`
	JournalBytes    int64    `json:"journal_bytes"`
	Clean           bool     `json:"clean"` // the last stop was clean
	Generation      uint64   `json:"generation"`
	AckedSeq        uint64   `json:"acked_seq"` // last seq the replica acknowledged (as recorded here)
	Replica         string   `json:"replica,omitempty"`
	Resync          []Extent `json:"resync"`
	LastError       string   `json:"last_error"`
	ReadOnly        string   `json:"read_only,omitempty"` // why writes are refused (demoted, failover in doubt)
}

// Status returns the live status of an open volume.
func (v *Volume) Status() Status {
	s := Status{
		Volume: v.name, VolumeID: v.id, Role: "primary", Mounted: true, Source: v.src,
		JournalSeq: uint64(v.j.LastSeq()), JournalFirstSeq: uint64(v.j.FirstSeq()),
		DurableSeq: uint64(v.j.DurableSeq()), CheckpointSeq: v.ckSeq.Load(),
		JournalBytes: v.j.Size(), Clean: !v.start.Unclean, Generation: v.Generation(),
		ReadOnly: v.ReadOnlyReason(),
	}
	s.AckedSeq, _ = v.meta.Uint(KeyShipNext)
	var err error
	if s.Resync, err = v.meta.Resync(); err != nil {
		s.LastError = err.Error()
	}
	if s.Resync == nil {
		s.Resync = []Extent{}
	}
	return s
}

// ReadStatus reads the status of a volume that is not mounted from its state directory,
// without changing anything in it.
func ReadStatus(state string) (Status, error) {
	var s Status
	if _, err := os.Stat(filepath.Join(state, "meta")); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return s, fmt.Errorf("%s is not a drfs state directory (no meta/)", state)
		}
		return s, err
	}
	lock, err := lockState(state)
	if err != nil {
		return s, err
	}
	defer lock.Close()
	m, err := OpenMeta(filepath.Join(state, "meta"))
	if err != nil {
		return s, err
	}
	defer m.Close()
	s.Role = "primary"
	s.Volume, _ = m.String(keyVolumeName)
	s.VolumeID, _ = m.String(keyVolumeID)
	s.Source, _ = m.String(keySource)
	s.CheckpointSeq, _ = m.Checkpoint()
	s.AckedSeq, _ = m.Uint(KeyShipNext)
	s.Replica, _ = m.String(KeyReplica)
	g, _ := m.Uint(keyGeneration)
	s.Generation = max(g, 1)
	running, err := m.Running()
	if err != nil {
		return s, err
	}
	s.Clean = !running
	if s.Resync, err = m.Resync(); err != nil {
		return s, err
	}
	if s.Resync == nil {
		s.Resync = []Extent{}
	}
	info, err := journal.Inspect(filepath.Join(state, "journal"))
	if err != nil {
		s.LastError = err.Error()
	}
	s.JournalSeq, s.JournalFirstSeq, s.DurableSeq, s.JournalBytes = uint64(info.LastSeq), uint64(info.FirstSeq), uint64(info.LastSeq), info.Size
	return s, nil
}
