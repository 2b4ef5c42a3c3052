package shipper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"drfs/changelog"
	"drfs/internal/fsutil"
	"drfs/wire"
)

// exportTarget writes change logs into a directory instead of sending them: for offline
// transport (an external disk carried to a replica that was seeded from the same volume).
// The directory's state file records what was written; `drfs apply` applies the files on the
// replica site with the same code as drfs serve. It cannot resync (nothing answers block-hash
// questions): a replica reached this way must be seeded first.
type exportTarget struct {
	dir string
	st  wire.State
}

const exportState = "export-state.json"

func openExportTarget(dir, volumeID string) (*exportTarget, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	t := &exportTarget{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, exportState))
	switch {
	case errors.Is(err, os.ErrNotExist):
		// A fresh export directory continues from what the primary last shipped (a seed
		// export records that as its consistent seq on the replica).
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &t.st); err != nil {
			return nil, fmt.Errorf("%s: %w", exportState, err)
		}
	}
	return t, nil
}

func (t *exportTarget) State(context.Context) (wire.State, error) { return t.st, nil }

func (t *exportTarget) Send(_ context.Context, b []byte) (uint64, error) {
	l, err := changelog.Unmarshal(b, changelog.Limits{})
	if err != nil {
		return t.st.Applied, err
	}
	if t.st.VolumeID == "" {
		t.st = wire.State{VolumeID: l.VolumeID, Generation: l.Generation, Applied: l.FromSeq - 1, Consistent: true}
	}
	if l.FromSeq != t.st.Applied+1 {
		return t.st.Applied, &RefusedError{Code: wire.CodeGap, Msg: fmt.Sprintf("export directory continues at seq %d", t.st.Applied+1), Applied: t.st.Applied}
	}
	if _, _, err := changelog.WriteFile(t.dir, l); err != nil {
		return t.st.Applied, err
	}
	t.st.Applied, t.st.Generation = l.ToSeq, l.Generation
	b2, _ := json.Marshal(t.st)
	return t.st.Applied, fsutil.WriteFileAtomic(filepath.Join(t.dir, exportState), b2, 0o600)
}

var errOffline = errors.New("an export directory cannot answer resync questions: seed the replica (drfs seed export/import) before shipping to a directory")

func (t *exportTarget) ResyncBegin(context.Context, string, uint64) error { return errOffline }
func (t *exportTarget) SyncComplete(context.Context, string, uint64, uint64, uint64, bool) error {
	return errOffline
}
func (t *exportTarget) Promote(context.Context, uint64, string) (wire.PromoteResult, error) {
	return wire.PromoteResult{}, &RefusedError{Code: wire.CodeRefused, Msg: "cannot fail over to an export directory"}
}

func (t *exportTarget) AbortPromote(context.Context, string) (wire.PromoteResult, error) {
	return wire.PromoteResult{Aborted: true}, nil
}
func (t *exportTarget) Describe(context.Context, string, int64, int64, int) (wire.Entry, error) {
	return wire.Entry{}, errOffline
}
func (t *exportTarget) List(context.Context, string) ([]wire.Entry, error) { return nil, errOffline }
func (t *exportTarget) String() string                                     { return "export://" + t.dir }
func (t *exportTarget) Close() error                                       { return nil }
