package control

import (
	"context"
	"errors"

	"drfs/internal/audit"
	"drfs/seed"
	"drfs/shipper"
	"drfs/volume"
)

// Mounted is the Service of a mounted volume and, when it replicates, its shipper.
type Mounted struct {
	Volume     *volume.Volume
	Shipper    *shipper.Shipper // nil: mounted without a replica
	Mountpoint string
}

var _ Service = (*Mounted)(nil)

// Status implements Service.
func (m *Mounted) Status(context.Context) Status {
	st := Status{Volume: m.Volume.Status()}
	st.Volume.Mountpoint = m.Mountpoint
	if m.Shipper != nil {
		ss := m.Shipper.Status()
		st.Replication = &ss
	}
	return st
}

// needReplica is the error of an operation that needs a replica, on a volume without one.
func (m *Mounted) needReplica(what string) error {
	if m.Shipper != nil {
		return nil
	}
	return errors.New("this volume has no replica" + what + " (mount with --replica)")
}

// Sync implements Service.
func (m *Mounted) Sync(ctx context.Context) (SyncResult, error) {
	if err := m.needReplica(""); err != nil {
		return SyncResult{}, err
	}
	seq, err := m.Shipper.SyncNow(ctx)
	return SyncResult{AckedSeq: seq}, err
}

// Failover implements Service.
func (m *Mounted) Failover(ctx context.Context, key string) (shipper.FailoverResult, error) {
	if err := m.needReplica(" to fail over to"); err != nil {
		return shipper.FailoverResult{}, err
	}
	return m.Shipper.PlannedFailover(ctx, key)
}

// Resolve implements Service.
func (m *Mounted) Resolve(ctx context.Context, force bool) (shipper.ResolveResult, error) {
	if err := m.needReplica(""); err != nil {
		return shipper.ResolveResult{}, err
	}
	if force {
		return m.Shipper.ForceResume()
	}
	return m.Shipper.Resolve(ctx)
}

// Verify implements Service.
func (m *Mounted) Verify(ctx context.Context) (shipper.VerifyResult, error) {
	if err := m.needReplica(" to verify against"); err != nil {
		return shipper.VerifyResult{}, err
	}
	return m.Shipper.Verify(ctx)
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
