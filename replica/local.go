package replica

import (
	"context"
	"errors"

	"drfs/changelog"
	"drfs/wire"
)

// LocalTarget is a replica volume on the primary's own host (a file:///DIR replica URL), as
// the shipper sees a replica: the same calls as the network protocol, applied by the same code
// as drfs serve, with errors mapped as the server maps them (refusals are *wire.RefusedError,
// an apply failure matches wire.ErrApply).
type LocalTarget struct {
	v   *Volume
	dir string
}

// OpenLocalTarget opens (creating if needed) volume name under the replica directory dir.
func OpenLocalTarget(dir, name string, opts Options) (*LocalTarget, error) {
	v, err := OpenVolume(dir, name, opts)
	if err != nil {
		return nil, err
	}
	return &LocalTarget{v: v, dir: dir}, nil
}

// State returns the volume's state, recording the primary's contact.
func (t *LocalTarget) State(context.Context) (wire.State, error) {
	t.v.Touch()
	return t.v.State(), nil
}

// Send applies an encoded change log and returns the applied seq.
func (t *LocalTarget) Send(_ context.Context, b []byte) (uint64, error) {
	l, err := changelog.Unmarshal(b, changelog.Limits{})
	if err != nil {
		return t.v.State().Applied, &wire.RefusedError{Code: wire.CodeBadLog, Msg: err.Error(), Applied: t.v.State().Applied}
	}
	applied, err := t.v.Apply(l)
	return applied, localErr(err, applied)
}

func localErr(err error, applied uint64) error {
	if code := RefusalCode(err); code != "" {
		return &wire.RefusedError{Code: code, Msg: err.Error(), Applied: applied}
	}
	if errors.Is(err, ErrApply) {
		return applyErr{err}
	}
	return err
}

// applyErr is a local apply failure: it reads as the replica's error and matches wire.ErrApply,
// as the network's "apply" answer does.
type applyErr struct{ err error }

func (e applyErr) Error() string   { return e.err.Error() }
func (e applyErr) Unwrap() []error { return []error{e.err, wire.ErrApply} }

// ResyncBegin marks the volume inconsistent until SyncComplete.
func (t *LocalTarget) ResyncBegin(_ context.Context, id string, gen uint64) error {
	return localErr(t.v.MarkInconsistent(id, gen), t.v.State().Applied)
}

// SyncComplete records that a resync finished (see Volume.SyncComplete).
func (t *LocalTarget) SyncComplete(_ context.Context, id string, gen, seq, tolerant uint64, exact bool) error {
	return localErr(t.v.SyncComplete(id, gen, seq, tolerant, exact), t.v.State().Applied)
}

// Promote runs the planned failover key (see Volume.Promote).
func (t *LocalTarget) Promote(_ context.Context, seq uint64, key string) (wire.PromoteResult, error) {
	res, err := t.v.Promote(wire.PromoteOptions{Planned: true, ExpectSeq: seq, Key: key})
	return res, promoteErr(err)
}

// AbortPromote makes sure key never promotes (see Volume.AbortPromotion).
func (t *LocalTarget) AbortPromote(_ context.Context, key string) (wire.PromoteResult, error) {
	res, err := t.v.AbortPromotion(key)
	return res, promoteErr(err)
}

// promoteErr maps a promotion error as the HTTP server does.
func promoteErr(err error) error {
	switch {
	case errors.Is(err, ErrPromoteRefused):
		return &wire.RefusedError{Code: wire.CodeRefused, Msg: err.Error()}
	case errors.Is(err, ErrStale):
		return &wire.RefusedError{Code: wire.CodeStale, Msg: err.Error()}
	}
	return err
}

// Describe returns the entry of p (see Volume.Describe).
func (t *LocalTarget) Describe(_ context.Context, p string, off, n int64, block int) (wire.Entry, error) {
	return t.v.Describe(p, off, n, block)
}

// List returns the entries of directory p.
func (t *LocalTarget) List(_ context.Context, p string) ([]wire.Entry, error) { return t.v.List(p) }

// String names the target as its URL.
func (t *LocalTarget) String() string { return "file://" + t.dir }

// Close closes the volume.
func (t *LocalTarget) Close() error { return t.v.Close() }
