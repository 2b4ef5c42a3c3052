package replica

import (
	"fmt"
	"os"
	"path/filepath"
)

// Clone writes a copy of the volume as of recovery point seq (a point from Points, or the
// applied seq) to dest/data. Applying pauses while the copy is taken; replication goes on
// afterwards and never touches the clone.
func (v *Volume) Clone(seq uint64, dest string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if seq != v.st.Applied {
		ok := false
		for _, p := range v.st.Points {
			if p.From-1 == seq {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("seq %d is not a recovery point (points: %s)", seq, pointList(v.st.Points))
		}
	}
	root, err := filepath.EvalSymlinks(v.data.root)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return err
	}
	data := filepath.Join(dest, "data")
	if err := copyTree(root, data); err != nil {
		os.RemoveAll(data)
		return fmt.Errorf("copy the replica: %w", err)
	}
	t, err := openTree(data)
	if err != nil {
		return err
	}
	defer t.close()
	for k := len(v.st.Points) - 1; k >= 0 && v.st.Points[k].From > seq; k-- {
		p := v.st.Points[k]
		entries, err := readUndo(filepath.Join(v.state, "undo", pointName(p)+".undo"))
		if err != nil {
			return err
		}
		for i := len(entries) - 1; i >= 0; i-- {
			if err := undoOn(t, entries[i], true); err != nil {
				return fmt.Errorf("roll the clone back to seq %d: %w", seq, err)
			}
		}
	}
	return nil
}
