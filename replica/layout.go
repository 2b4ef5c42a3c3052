package replica

import (
	"os"
	"path/filepath"
	"sort"

	"drfs/internal/audit"
)

// Layout names the places of one volume in a replica directory. It is the one description of
// that layout: every tool that reaches into a replica directory goes through it.
//
//	Dir/                       the replica directory (drfs serve --dir)
//	Dir/drfs-serve.sock        the local socket of a running drfs serve (LocalSocket)
//	Dir/V/data/                the volume's files
//	Dir/V/state/               state.json, undo/, trash/, the audit log
//	Dir/V/state/diverged/      what an old primary wrote that never reached the replica
//	Dir/V/primary/             the primary state prepared by a promotion (default)
//	Dir/V/test-failover/       a test failover's writable clone (data/ and state/)
type Layout struct {
	Dir    string // the replica directory
	Volume string // the volume's name
}

// LocalSocket is the name, inside a replica directory, of the unix socket on which a running
// drfs serve answers the operator's local commands (promote, test-failover).
const LocalSocket = "drfs-serve.sock"

// stateFile is the name of a volume's durable state inside its state directory.
const stateFile = "state.json"

// Root is the volume's directory, Dir/V.
func (l Layout) Root() string { return filepath.Join(l.Dir, l.Volume) }

// Data is the directory of the volume's files, usable as a source after promotion.
func (l Layout) Data() string { return filepath.Join(l.Root(), "data") }

// State is the directory of the volume's replica state.
func (l Layout) State() string { return filepath.Join(l.Root(), "state") }

// StateFile is the file holding the volume's durable state (see State).
func (l Layout) StateFile() string { return filepath.Join(l.State(), stateFile) }

// Audit is the volume's audit log of failover actions on this site.
func (l Layout) Audit() string { return filepath.Join(l.State(), audit.FileName) }

// Primary is the default primary state directory a promotion prepares.
func (l Layout) Primary() string { return filepath.Join(l.Root(), "primary") }

// Diverged is where a reversed old primary keeps the records that never reached the replica.
func (l Layout) Diverged() string { return filepath.Join(l.State(), "diverged") }

// TestFailover is the directory of a test failover's writable clone.
func (l Layout) TestFailover() string { return filepath.Join(l.Root(), "test-failover") }

// Socket is the local socket of a drfs serve on Dir (see LocalSocket).
func (l Layout) Socket() string { return filepath.Join(l.Dir, LocalSocket) }

// layout is the volume's place in its replica directory.
func (v *Volume) layout() Layout { return Layout{filepath.Dir(v.dir), v.name} }

// Volumes lists, sorted, the names of the volumes in replica directory dir: the
// subdirectories that hold a volume state. Anything else in dir is not a volume and is
// skipped.
func Volumes(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(Layout{dir, e.Name()}.StateFile()); err == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}
