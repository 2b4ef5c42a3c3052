package replica

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"drfs/changelog"
	"drfs/journal"
)

// loopDevice attaches a loop device to a fresh 1 MiB file of zeros and returns the device's
// number and the backing file.
func loopDevice(t *testing.T) (rdev uint64, backing string) {
	t.Helper()
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Fatalf("this test needs losetup (util-linux) and root: %v", err)
	}
	backing = filepath.Join(t.TempDir(), "backing.img")
	if err := os.WriteFile(backing, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", backing).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	return st.Rdev, backing
}

// applyTimeout applies l through the wire format and fails the test if Apply blocks.
func applyTimeout(t *testing.T, v *Volume, l *changelog.Log) error {
	t.Helper()
	b, _, err := changelog.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := changelog.Unmarshal(b, changelog.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := v.Apply(dl); errc <- err }()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("Apply %d-%d blocked for 10s", l.FromSeq, l.ToSeq)
		return nil
	}
}

// noDevices fails if the tree under root holds a device node.
func noDevices(t *testing.T, root string) {
	t.Helper()
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&(os.ModeDevice|os.ModeCharDevice) != 0 {
			t.Errorf("replica tree holds device node %s (%v)", p, fi.Mode())
		}
		return nil
	})
}

// TestReplica_NeverWritesToADevice: a change log that creates a block device node and writes
// to it (in one batch, or in a later log) must be refused without a byte reaching the device.
func TestReplica_NeverWritesToADevice(t *testing.T) {
	evil := bytes.Repeat([]byte("EVIL"), 1024)
	for _, tc := range []struct {
		name string
		logs func(rdev uint64) [][]journal.Op
	}{
		{"same-log", func(rdev uint64) [][]journal.Op {
			return [][]journal.Op{{
				journal.OpMknod{Path: "disk", Mode: unix.S_IFBLK | 0o600, Rdev: rdev},
				journal.OpWrite{Path: "disk", Off: 0, Data: evil},
			}}
		}},
		{"char-device", func(uint64) [][]journal.Op {
			return [][]journal.Op{{
				journal.OpMknod{Path: "null", Mode: unix.S_IFCHR | 0o600, Rdev: uint64(unix.Mkdev(1, 3))},
			}}
		}},
		{"create-over-device", func(rdev uint64) [][]journal.Op {
			return [][]journal.Op{{
				journal.OpMknod{Path: "disk", Mode: unix.S_IFBLK | 0o600, Rdev: rdev},
				journal.OpCreate{Path: "disk", Mode: 0o600},
				journal.OpWrite{Path: "disk", Off: 0, Data: evil},
			}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdev, backing := loopDevice(t)
			v := MustOpenVolume(t, t.TempDir())
			mustApply(t, v, jlog(v, journal.OpCreate{Path: "ok", Mode: 0o644}))
			before := v.State().Applied
			for _, ops := range tc.logs(rdev) {
				err := applyTimeout(t, v, jlog(v, ops...))
				if err == nil {
					t.Errorf("a change log creating a device node was applied")
				} else if !strings.Contains(err.Error(), "device") {
					t.Errorf("refusal %q does not name the device node", err)
				}
			}
			noDevices(t, v.DataDir())
			if b, _ := os.ReadFile(backing); !bytes.Equal(b, make([]byte, 1<<20)) {
				t.Fatalf("bytes reached the loop device's backing file: %q", b[:16])
			}
			if got := v.State().Applied; got != before {
				t.Errorf("applied seq %d after refused logs, want %d", got, before)
			}
		})
	}
}

// TestReplica_NeverOpensAFifo: a FIFO may exist in the tree (it is inert), but data ops on it
// fail at once instead of blocking the apply forever.
func TestReplica_NeverOpensAFifo(t *testing.T) {
	v := MustOpenVolume(t, t.TempDir())
	mustApply(t, v, jlog(v, journal.OpMknod{Path: "fifo", Mode: unix.S_IFIFO | 0o600}))
	for _, ops := range [][]journal.Op{
		{journal.OpWrite{Path: "fifo", Off: 0, Data: []byte("x")}},
		{journal.OpCreate{Path: "fifo", Mode: 0o600}},
		{journal.OpMknod{Path: "f2", Mode: unix.S_IFIFO | 0o600}, journal.OpWrite{Path: "f2", Off: 0, Data: []byte("x")}},
		{journal.OpMknod{Path: "f3", Mode: unix.S_IFIFO | 0o600}, journal.OpTruncate{Path: "f3", Size: 0}},
	} {
		err := applyTimeout(t, v, jlog(v, ops...))
		if err == nil || !errors.Is(err, ErrApply) {
			t.Errorf("%v: err %v, want a refusal", ops, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(v.DataDir(), "fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO of the first log is gone: %v %v", fi, err)
	}
}
