package replica

import "drfs/volume"

// Reversed reports an old primary made a replica by Reverse.
type Reversed struct {
	volume.Divergence        // what the old primary held that the replica never acknowledged
	Data              string // the volume's data directory in the replica directory
}

// Reverse makes the old primary whose (unmounted) state directory is state a replica volume
// in replica directory dir, after a failover made its replica the primary: the records the
// replica never acknowledged are saved as a change log in Layout.Diverged for forensics, the
// state is demoted, and the source becomes the volume's data (see Adopt). The extents that
// diverged are compared by block hash when the new primary connects, and overwritten.
func Reverse(state, dir string, logf func(string, ...any)) (Reversed, error) {
	st, err := volume.ReadStatus(state)
	if err != nil {
		return Reversed{}, err
	}
	d, err := volume.Diverge(state, Layout{dir, st.Volume}.Diverged(), "reversed into a replica of the new primary")
	if err != nil {
		return Reversed{}, err
	}
	data, err := Adopt(dir, d, logf)
	if err != nil {
		return Reversed{}, err
	}
	return Reversed{Divergence: d, Data: data}, nil
}
