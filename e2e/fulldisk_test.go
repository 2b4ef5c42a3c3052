package e2e

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// smallFS mounts a fresh ext4 filesystem of the given size and returns its mountpoint.
func smallFS(t testing.TB, size string) string {
	t.Helper()
	requireTools(t, "mkfs.ext4", "mount", "umount")
	d := scratchDir(t, "drfs-e2e-small-")
	img, mnt := filepath.Join(d, "fs.img"), filepath.Join(d, "m")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, time.Minute, "truncate", "-s", size, img)
	mustRun(t, time.Minute, "mkfs.ext4", "-q", "-m", "0", img)
	mustRun(t, time.Minute, "mount", "-o", "loop", img, mnt)
	t.Cleanup(func() {
		if _, err := run(t, time.Minute, "umount", mnt); err != nil {
			forceUnmount(mnt)
		}
	})
	return mnt
}

// Full disks: a journal filesystem too small for what the guest writes makes drfs release
// journal segments (checkpoint) instead of failing the guest; a full source filesystem gives the
// guest ENOSPC; in both cases nothing acknowledged is lost.
func TestFault_FullDisk(t *testing.T) {
	stateFS := smallFS(t, "128M")
	srcFS := smallFS(t, "64M")
	src := filepath.Join(srcFS, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	m := testMountWith(t, MountOptions{Src: src, State: filepath.Join(stateFS, "state"), Volume: "full",
		Args: []string{"--segment-size", "4M"}})

	// 256 MiB of overwrites of a 16 MiB file through a 128 MiB journal filesystem.
	const chunk = 1 << 20
	want := make([][]byte, 16)
	fa, err := os.OpenFile(filepath.Join(m.Mnt, "a.img"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 256; i++ {
		d := randBytes(uint64(1000+i), chunk)
		if _, err := fa.WriteAt(d, int64(i%16)*chunk); err != nil {
			t.Fatalf("write %d of 256 MiB through a 128 MiB journal filesystem: %v", i, err)
		}
		want[i%16] = d
		if i%16 == 15 {
			if err := fa.Sync(); err != nil {
				t.Fatalf("fsync after %d MiB: %v", i+1, err)
			}
		}
	}
	fa.Close()
	// Only a full journal filesystem checkpoints this early (the interval is 30 s).
	if st := m.Status(); *st.CheckpointSeq == 0 {
		t.Fatal("256 MiB went through a 128 MiB journal filesystem without a checkpoint releasing segments")
	}

	// Fill the source filesystem: the guest gets ENOSPC, the mount keeps working.
	fb, err := os.OpenFile(filepath.Join(m.Mnt, "b.img"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var acked [][]byte
	for i := 0; i < 128; i++ {
		d := randBytes(uint64(2000+i), chunk)
		if _, err := fb.WriteAt(d, int64(i)*chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write to a full source filesystem: %v, want ENOSPC", err)
			}
			break
		}
		acked = append(acked, d)
	}
	fb.Close()
	if len(acked) == 0 || len(acked) == 128 {
		t.Fatalf("%d MiB written to a 64 MiB source filesystem", len(acked))
	}
	t.Logf("source filesystem full after %d MiB", len(acked))
	if got, err := os.ReadFile(filepath.Join(m.Mnt, "a.img")); err != nil || !bytes.Equal(got[:chunk], want[0]) {
		t.Fatalf("the mount does not read back after a full disk: %v", err)
	}

	m.Stop()
	m.Remount()
	got, err := os.ReadFile(filepath.Join(m.Mnt, "a.img"))
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if !bytes.Equal(got[i*chunk:(i+1)*chunk], w) {
			t.Fatalf("a.img MiB %d lost after remount", i)
		}
	}
	gotB, err := os.ReadFile(filepath.Join(m.Mnt, "b.img"))
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range acked {
		if len(gotB) < (i+1)*chunk || !bytes.Equal(gotB[i*chunk:(i+1)*chunk], w) {
			t.Fatalf("acknowledged write %d of b.img lost after remount", i)
		}
	}
}
