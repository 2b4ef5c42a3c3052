package shipper

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"drfs/internal/logtest"
	"drfs/journal"
	"drfs/volume"
	"drfs/wire"
)

// stateTarget answers State with a fixed replica state; anything else is an error.
type stateTarget struct {
	Target
	st wire.State
}

func (s *stateTarget) State(context.Context) (wire.State, error) { return s.st, nil }
func (s *stateTarget) String() string                            { return "stub" }

// mustVolume opens a primary volume with records 1..n in its journal.
func mustVolume(t *testing.T, n int) *volume.Volume {
	t.Helper()
	d := t.TempDir()
	src := filepath.Join(d, "src")
	os.Mkdir(src, 0o755)
	vol, err := volume.Open(volume.Config{Source: src, State: filepath.Join(d, "state"), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vol.Close() })
	unlock := vol.LockNamespace()
	for i := range n {
		name := "d" + string(rune('a'+i))
		if err := os.Mkdir(filepath.Join(src, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := vol.Record(journal.OpMkdir{Path: name, Mode: 0o40755}); err != nil {
			t.Fatal(err)
		}
	}
	unlock()
	if got := vol.Journal().LastSeq(); got != journal.Seq(n) {
		t.Fatalf("journal ends at %d, want %d", got, n)
	}
	return vol
}

// TestShipper_SessionReconciles: at session start the shipper compares the replica's state
// with its own and fences itself, plans a sync, or resumes from the replica's seq.
func TestShipper_SessionReconciles(t *testing.T) {
	for _, c := range []struct {
		name    string
		st      func(vol *volume.Volume) wire.State
		fenced  string // error text when the session must stop fenced
		sync    bool   // a resync must be pending afterwards
		resumed uint64 // next seq to ship from, when neither
	}{
		{name: "another volume", st: func(*volume.Volume) wire.State { return wire.State{VolumeID: "other", Consistent: true} }, fenced: "holds volume other"},
		{name: "newer generation", st: func(v *volume.Volume) wire.State {
			return wire.State{VolumeID: v.ID(), Generation: 2, History: []wire.GenRecord{{Generation: 2, StartSeq: 3, Host: "dr"}}}
		}, fenced: "promoted to generation 2 on dr"},
		{name: "promoted", st: func(v *volume.Volume) wire.State {
			return wire.State{VolumeID: v.ID(), Generation: 1, Role: wire.RolePromoted}
		}, fenced: "it was promoted"},
		{name: "ahead of the journal", st: func(v *volume.Volume) wire.State {
			return wire.State{VolumeID: v.ID(), Generation: 1, Applied: 9, Consistent: true}
		}, fenced: "diverged"},
		{name: "empty replica", st: func(*volume.Volume) wire.State { return wire.State{} }, sync: true},
		{name: "initial sync never started", st: func(v *volume.Volume) wire.State {
			return wire.State{VolumeID: v.ID(), Generation: 1}
		}, sync: true},
		{name: "behind, journal covers it", st: func(v *volume.Volume) wire.State {
			return wire.State{VolumeID: v.ID(), Generation: 1, Applied: 2, Consistent: true}
		}, resumed: 2},
		{name: "reversed old primary", st: func(v *volume.Volume) wire.State {
			return wire.State{VolumeID: v.ID(), Generation: 0, Applied: 1, Diverged: []wire.Extent{{Path: "x", Len: -1}}}
		}, sync: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			vol := mustVolume(t, 4)
			s, err := New(Config{Volume: vol, Target: &stateTarget{st: c.st(vol)}, Logger: logtest.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // reconcile only: no cycles
			err = s.session(ctx)
			switch {
			case c.fenced != "":
				if !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), c.fenced) {
					t.Fatalf("session: %v, want fenced saying %q", err, c.fenced)
				}
				return
			case err != nil:
				t.Fatalf("session: %v", err)
			}
			if got := vol.ResyncPending(); got != c.sync {
				t.Fatalf("resync pending %v, want %v", got, c.sync)
			}
			if !c.sync && s.next.Load() != c.resumed {
				t.Fatalf("next %d, want %d", s.next.Load(), c.resumed)
			}
		})
	}
}
