package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExt4_LoopImage puts an ext4 file system in a file on the mount, through
// a loop device with direct I/O on (O_DIRECT through FUSE) and off, copies a
// real source tree into it, and after unmounting drfs checks the source image
// with e2fsck and diffs the tree through a read-only loop mount of it.
func TestExt4_LoopImage(t *testing.T) {
	requireTools(t, "losetup", "mkfs.ext4", "e2fsck", "mount", "umount", "diff", "cp", "sync")
	goroot := goRoot(t)
	if out, err := run(t, time.Minute, "go", "env", "GOROOT"); err == nil && strings.TrimSpace(out) != "" {
		goroot = strings.TrimSpace(out)
	}
	cases := []struct {
		name, dio, tree string
	}{
		{"dio=on", "on", filepath.Join(goroot, "src", "cmd")},
		{"dio=off", "off", filepath.Join(goroot, "src", "runtime")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if st, err := os.Stat(tc.tree); err != nil || !st.IsDir() {
				t.Fatalf("tree to copy %s: %v", tc.tree, err)
			}
			m := testMount(t)
			img := filepath.Join(m.Mnt, "ext4.img")
			mustRun(t, time.Minute, "truncate", "-s", "512M", img)

			dev := strings.TrimSpace(mustRun(t, time.Minute, "losetup", "-f", "--show", "--direct-io="+tc.dio, img))
			if !strings.HasPrefix(dev, "/dev/loop") {
				t.Fatalf("losetup printed %q", dev)
			}
			detached := false
			detach := func() {
				if detached {
					return
				}
				detached = true
				run(t, time.Minute, "losetup", "-d", dev)
				waitLoopGone(t, dev)
			}
			t.Cleanup(detach)
			want := map[string]string{"on": "1", "off": "0"}[tc.dio]
			if got := strings.TrimSpace(mustRun(t, time.Minute, "losetup", "-n", "-O", "DIO", "--list", dev)); got != want {
				t.Fatalf("loop device %s on the drfs mount: DIO=%s, want %s (the kernel refused direct I/O on the FUSE file)", dev, got, want)
			}

			mustRun(t, 2*time.Minute, "mkfs.ext4", "-q", "-F", dev)
			fsMnt := filepath.Join(scratchDir(t, "drfs-e2e-ext4-"), "m")
			if err := os.Mkdir(fsMnt, 0o755); err != nil {
				t.Fatal(err)
			}
			mustRun(t, time.Minute, "mount", "-t", "ext4", dev, fsMnt)
			mounted := true
			t.Cleanup(func() {
				if mounted {
					if _, err := run(t, time.Minute, "umount", fsMnt); err != nil {
						forceUnmount(fsMnt)
					}
				}
			})
			mustRun(t, 4*time.Minute, "cp", "-a", tc.tree, filepath.Join(fsMnt, "tree"))
			mustRun(t, 2*time.Minute, "sync", "-f", filepath.Join(fsMnt, "tree"))
			mustRun(t, 2*time.Minute, "diff", "-r", "--no-dereference", tc.tree, filepath.Join(fsMnt, "tree"))
			mustRun(t, 2*time.Minute, "umount", fsMnt)
			mounted = false
			detach()

			m.Stop()
			srcImg := filepath.Join(m.Src, "ext4.img")
			mustRun(t, 3*time.Minute, "e2fsck", "-fn", srcImg)

			roMnt := filepath.Join(scratchDir(t, "drfs-e2e-ext4ro-"), "m")
			if err := os.Mkdir(roMnt, 0o755); err != nil {
				t.Fatal(err)
			}
			mustRun(t, time.Minute, "mount", "-t", "ext4", "-o", "ro,loop,noload", srcImg, roMnt)
			t.Cleanup(func() {
				if _, err := run(t, time.Minute, "umount", roMnt); err != nil {
					forceUnmount(roMnt)
				}
			})
			mustRun(t, 2*time.Minute, "diff", "-r", "--no-dereference", tc.tree, filepath.Join(roMnt, "tree"))
		})
	}
}

// waitLoopGone waits until dev no longer has a backing file (losetup -d is
// deferred while udev or blkid still hold the device open).
func waitLoopGone(t *testing.T, dev string) {
	t.Helper()
	bf := filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(bf); os.IsNotExist(err) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("loop device %s still attached 10s after losetup -d", dev)
}
