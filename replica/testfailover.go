package replica

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"drfs/internal/audit"
	"drfs/internal/fsutil"
	"drfs/wire"
)

// TestFailover is a writable clone of a replica volume at a recovery point, prepared as a
// primary of its own (volume V-test, ID ID-test) so it can be mounted and booted while
// replication goes on untouched. It lives in Layout.TestFailover: data/ is its source and
// state/ its primary state.
type TestFailover struct {
	Name   string // the clone's volume name
	Seq    uint64 // the recovery point it was taken at
	Dir    string // the clone's directory
	Source string // mount this as --source
	State  string // and this as --state
}

// ErrTestFailoverMounted means the clone is still mounted by a running drfs.
var ErrTestFailoverMounted = errors.New("replica: the test failover is still mounted")

func (o Operator) testFailover(name string, seq uint64) TestFailover {
	dir := o.TestFailover()
	return TestFailover{Name: name, Seq: seq, Dir: dir, Source: filepath.Join(dir, "data"), State: filepath.Join(dir, "state")}
}

// StartTestFailover clones the volume at recovery point point (nil: the latest applied seq)
// and prepares the clone as a primary, ready to mount. There is at most one test failover of
// a volume at a time; CleanupTestFailover removes it. Both are recorded in the volume's audit
// log, with the mountpoint the clone is meant for.
func (o Operator) StartTestFailover(ctx context.Context, point *uint64, mountpoint string) (TestFailover, error) {
	dest := o.TestFailover()
	if _, err := os.Stat(dest); err == nil {
		return TestFailover{}, fmt.Errorf("a test failover clone exists in %s: run drfs test-failover --cleanup first", dest)
	}
	st, err := ReadState(o.Dir, o.Volume)
	if err != nil {
		return TestFailover{}, err
	}
	seq := st.Applied
	if point != nil {
		seq = *point
	}
	if err := o.Clone(ctx, seq, dest); err != nil {
		return TestFailover{}, err
	}
	tf := o.testFailover(o.Volume+"-test", seq)
	if o.PreparePrimary == nil {
		return tf, errors.New("replica: no PreparePrimary to make the clone a primary state")
	}
	if err := o.PreparePrimary(wire.PrimaryState{State: tf.State, Source: tf.Source,
		Name: tf.Name, ID: st.VolumeID + "-test", Generation: st.Generation, Seq: seq}); err != nil {
		return tf, err
	}
	audit.Append(o.Audit(), audit.Entry{Action: "test-failover", Volume: o.Volume, VolumeID: st.VolumeID, GenBefore: st.Generation, GenAfter: st.Generation, Point: seq,
		Detail: "writable clone in " + dest + " mounted on " + mountpoint}.Who())
	return tf, nil
}

// CleanupTestFailover removes the clone of a finished test failover and returns its
// directory. It refuses (ErrTestFailoverMounted) while a drfs holds the clone's state.
func (o Operator) CleanupTestFailover() (string, error) {
	dest := o.TestFailover()
	if _, err := os.Stat(dest); err != nil {
		return dest, fmt.Errorf("no test failover clone in %s", dest)
	}
	if locked, _ := fsutil.Locked(filepath.Join(o.testFailover("", 0).State, "LOCK")); locked {
		return dest, ErrTestFailoverMounted
	}
	if err := os.RemoveAll(dest); err != nil {
		return dest, err
	}
	audit.Append(o.Audit(), audit.Entry{Action: "test-failover-cleanup", Volume: o.Volume, Detail: "removed " + dest}.Who())
	return dest, nil
}
