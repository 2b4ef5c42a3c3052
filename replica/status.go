package replica

import (
	"drfs/wire"
	"fmt"
	"time"
)

// VolumeStatus is one volume of a replica directory as `drfs status --dir` reports it.
type VolumeStatus struct {
	Volume         string    `json:"volume"`
	VolumeID       string    `json:"volume_id"`
	Role           wire.Role `json:"role"`
	Generation     uint64    `json:"generation"`
	AppliedSeq     uint64    `json:"applied_seq"`
	LagSeconds     float64   `json:"lag_seconds"` // age of the newest applied change log
	AppliedAt      time.Time `json:"applied_at"`
	Consistent     bool      `json:"consistent"`
	Points         int       `json:"recovery_points"`
	OldestPointSeq uint64    `json:"oldest_point_seq"`
	DataDir        string    `json:"data_dir"`
	PendingBytes   int64     `json:"pending_bytes"`
	LastError      string    `json:"last_error"`
}

// DirStatus reports every volume of replica directory dir, sorted by name, from their durable
// state alone: it opens (and locks) nothing, so it works while drfs serve holds the volumes.
// Lag is measured against now.
func DirStatus(dir string, now time.Time) ([]VolumeStatus, error) {
	names, err := Volumes(dir)
	if err != nil {
		return nil, err
	}
	var out []VolumeStatus
	for _, name := range names {
		st, err := ReadState(dir, name)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", name, err)
		}
		out = append(out, statusOf(Layout{dir, name}, st, now))
	}
	return out, nil
}

func statusOf(l Layout, st wire.State, now time.Time) VolumeStatus {
	role := st.Role
	if role == "" {
		role = wire.RoleReplica
	}
	rs := VolumeStatus{Volume: l.Volume, VolumeID: st.VolumeID, Role: role, Generation: st.Generation,
		AppliedSeq: st.Applied, AppliedAt: st.AppliedAt, Consistent: st.Consistent, Points: len(st.Points),
		DataDir: l.Data(), LastError: st.LastError}
	if !st.AppliedCreated.IsZero() {
		rs.LagSeconds = now.Sub(st.AppliedCreated).Seconds()
	}
	if len(st.Points) > 0 {
		rs.OldestPointSeq = st.Points[0].From - 1
	}
	return rs
}
