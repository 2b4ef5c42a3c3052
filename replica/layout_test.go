package replica

import (
	"drfs/wire"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The layout names the documented places, and agrees with where OpenVolume and ReadState look.
func TestLayout_Paths(t *testing.T) {
	l := Layout{Dir: "/r", Volume: "vms"}
	for _, c := range []struct{ got, want string }{
		{l.Root(), "/r/vms"},
		{l.Data(), "/r/vms/data"},
		{l.State(), "/r/vms/state"},
		{l.StateFile(), "/r/vms/state/state.json"},
		{l.Audit(), "/r/vms/state/audit.log"},
		{l.Primary(), "/r/vms/primary"},
		{l.Diverged(), "/r/vms/state/diverged"},
		{l.TestFailover(), "/r/vms/test-failover"},
		{l.Socket(), "/r/drfs-serve.sock"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}

	dir := t.TempDir()
	v, err := OpenVolume(dir, "vms", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	l = Layout{Dir: dir, Volume: "vms"}
	if got, _ := filepath.EvalSymlinks(v.DataDir()); got != mustEval(t, l.Data()) {
		t.Errorf("volume data in %s, layout says %s", v.DataDir(), l.Data())
	}
	v.mu.Lock()
	v.st.VolumeID = "id-1"
	err = v.save()
	v.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.StateFile()); err != nil {
		t.Errorf("state file: %v", err)
	}
}

func mustEval(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Volumes lists the subdirectories with a volume state, and nothing else.
func TestVolumes(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b", "a"} {
		if err := os.MkdirAll(Layout{dir, n}.State(), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(Layout{dir, n}.StateFile(), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "empty", "state"), 0o700) // no state file yet
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, LocalSocket), nil, 0o600)
	got, err := Volumes(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Volumes = %v, want %v", got, want)
	}
	if _, err := Volumes(filepath.Join(dir, "missing")); err == nil {
		t.Error("Volumes of a missing directory: no error")
	}
}

// A promotion without --state-out prepares the primary state where the layout says, and
// reports the layout's data directory as the source.
func TestLayout_PromoteUsesLayout(t *testing.T) {
	v, dir := mustPromotable(t)
	res, err := v.Promote(wire.PromoteOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	l := Layout{Dir: dir, Volume: v.Name()}
	if res.State != l.Primary() {
		t.Errorf("primary state in %s, layout says %s", res.State, l.Primary())
	}
	if mustEval(t, res.Source) != mustEval(t, l.Data()) {
		t.Errorf("source %s, layout says %s", res.Source, l.Data())
	}
}
