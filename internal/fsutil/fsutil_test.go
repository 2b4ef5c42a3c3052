package fsutil

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenBeneath: nothing outside the directory is reachable, through "..", an absolute path,
// or a symlink anywhere on the way; a final symlink is opened as the link with O_PATH only.
func TestOpenBeneath(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	for _, d := range []string{"d", "d/e"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "d", "f"), []byte("in"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("out"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"out": outside, "rel": "../d", "fl": "d/f"} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	dfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	for _, c := range []struct {
		path  string
		flags int
		ok    bool
	}{
		{"d/f", unix.O_RDONLY, true},
		{".", unix.O_RDONLY | unix.O_DIRECTORY, true},
		{"d/e/../f", unix.O_RDONLY, true},
		{"../" + filepath.Base(outside) + "/secret", unix.O_RDONLY, false},
		{filepath.Join(outside, "secret"), unix.O_RDONLY, false},
		{"out/secret", unix.O_RDONLY, false},
		{"rel/f", unix.O_RDONLY, false},
		{"fl", unix.O_RDONLY, false},
		{"fl", unix.O_PATH | unix.O_NOFOLLOW, true}, // the link itself
		{"d/missing", unix.O_RDONLY, false},
	} {
		fd, err := OpenBeneath(dfd, c.path, c.flags, 0)
		if (err == nil) != c.ok {
			t.Errorf("OpenBeneath(%q, %#x): err %v, want ok=%v", c.path, c.flags, err, c.ok)
		}
		if err == nil {
			var st unix.Stat_t
			unix.Fstat(fd, &st)
			if c.path == "fl" && st.Mode&unix.S_IFMT != unix.S_IFLNK {
				t.Errorf("OpenBeneath(fl, O_PATH) opened mode %#o, want the symlink itself", st.Mode)
			}
			unix.Close(fd)
		}
	}
}

func TestLocked(t *testing.T) {
	p := filepath.Join(t.TempDir(), "LOCK")
	if l, err := Locked(p); l || err != nil {
		t.Fatalf("missing file: locked %v, %v", l, err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if l, err := Locked(p); l || err != nil {
		t.Fatalf("unlocked file: locked %v, %v", l, err)
	}
	// flock locks belong to the open file description: another open sees it.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if l, err := Locked(p); !l || err != nil {
		t.Fatalf("locked file: locked %v, %v", l, err)
	}
}

// TestSyncSet: one descriptor per inode however often it is added, still valid after the name
// went away, and nothing left after Sync.
func TestSyncSet(t *testing.T) {
	d := t.TempDir()
	var s SyncSet
	p := filepath.Join(d, "f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := os.Open(p) // another descriptor of the same inode
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, fd := range []uintptr{f.Fd(), g.Fd(), f.Fd()} {
		if err := s.Add(int(fd)); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Len(); n != 1 {
		t.Fatalf("Len %d after adding one inode three times, want 1", n)
	}
	if err := os.Rename(p, filepath.Join(d, "g")); err != nil {
		t.Fatal(err)
	}
	s.AddDir(d)
	s.AddDir(filepath.Join(d, "gone")) // a directory removed since is not an error
	if err := s.Sync(nil); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("Len %d after Sync, want 0", n)
	}
}
