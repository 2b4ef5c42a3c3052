package control

import (
	"context"
	"errors"
	"sync/atomic"

	"drfs/internal/audit"
	"drfs/seed"
	"drfs/shipper"
	"drfs/volume"
)

// Mounted is the Service of a mounted volume and, when it replicates, its shipper.
type Mounted struct {
	Volume     *volume.Volume
	Mountpoint string

	ship atomic.Pointer[shipper.Shipper] // nil: mounted without a replica
}

var _ Service = (*Mounted)(nil)

// SetShipper sets the shipper of the volume (nil: it has none), which may change while the
// volume stays mounted (a reload that changes its replica).
func (m *Mounted) SetShipper(s *shipper.Shipper) { m.ship.Store(s) }

// Shipper is the volume's shipper, nil when it does not replicate.
func (m *Mounted) Shipper() *shipper.Shipper { return m.ship.Load() }

// Status implements Service.
func (m *Mounted) Status(context.Context) Status {
	st := Status{Volume: m.Volume.Status()}
	st.Volume.Mountpoint = m.Mountpoint
	if s := m.Shipper(); s != nil {
		ss := s.Status()
		st.Replication = &ss
	}
	return st
}

// replicating returns the shipper of an operation that needs a replica, or the error of a
// volume without one.
func (m *Mounted) replicating(what string) (*shipper.Shipper, error) {
	if s := m.Shipper(); s != nil {
		return s, nil
	}
	return nil, errors.New("this volume has no replica" + what + " (give it one: replica in the configuration, or --replica)")
}

// Sync implements Service.
func (m *Mounted) Sync(ctx context.Context) (SyncResult, error) {
	s, err := m.replicating("")
	if err != nil {
		return SyncResult{}, err
	}
	seq, err := s.SyncNow(ctx)
	return SyncResult{AckedSeq: seq}, err
}

// Failover implements Service.
func (m *Mounted) Failover(ctx context.Context, key string) (shipper.FailoverResult, error) {
	s, err := m.replicating(" to fail over to")
	if err != nil {
		return shipper.FailoverResult{}, err
	}
	return s.PlannedFailover(ctx, key)
}

// Resolve implements Service.
func (m *Mounted) Resolve(ctx context.Context, force bool) (shipper.ResolveResult, error) {
	s, err := m.replicating("")
	if err != nil {
		return shipper.ResolveResult{}, err
	}
	if force {
		return s.ForceResume()
	}
	return s.Resolve(ctx)
}

// Verify implements Service.
func (m *Mounted) Verify(ctx context.Context) (shipper.VerifyResult, error) {
	s, err := m.replicating(" to verify against")
	if err != nil {
		return shipper.VerifyResult{}, err
	}
	return s.Verify(ctx)
}

// SeedExport implements Service; the export is recorded in the volume's audit log.
func (m *Mounted) SeedExport(_ context.Context, dir string) (SeedExportResult, error) {
	man, err := seed.Export(m.Volume, dir)
	if err != nil {
		return SeedExportResult{}, err
	}
	m.Volume.Audit(audit.Entry{Action: "seed-export", GenBefore: man.Generation, GenAfter: man.Generation, Point: man.Seq, Detail: "to " + dir})
	return SeedExportResult{Seq: man.Seq, Files: len(man.Files)}, nil
}
