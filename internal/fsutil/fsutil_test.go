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
		{"fl", unix.O_PATH, true}, // the link itself
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
