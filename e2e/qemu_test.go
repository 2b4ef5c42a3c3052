package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// qemuIOFailure matches qemu-io output that signals a failed command;
// qemu-io's exit status is not reliable for -c commands.
var qemuIOFailure = regexp.MustCompile(`(?i)pattern verification failed|failed|error|can't|cannot`)

// qemuIO runs qemu-io and fails the test on a bad exit or an error message.
func qemuIO(t *testing.T, img, cache string, cmds ...string) string {
	t.Helper()
	args := []string{"-f", "qcow2", "-t", cache}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, img)
	out, err := run(t, 3*time.Minute, "qemu-io", args...)
	if err != nil || qemuIOFailure.MatchString(out) {
		t.Fatalf("qemu-io %s on %s: err=%v\n%s", strings.Join(cmds, " ; "), img, err, out)
	}
	return out
}

func qemuImgCheck(t *testing.T, img string) {
	t.Helper()
	out, err := run(t, 3*time.Minute, "qemu-img", "check", "-f", "qcow2", img)
	if err != nil || !strings.Contains(out, "No errors were found") {
		t.Fatalf("qemu-img check %s: err=%v\n%s", img, err, out)
	}
}

// TestQemu_Qcow2 creates and writes a qcow2 on the mount with qemu-img and
// qemu-io (cache=none, i.e. O_DIRECT, and writeback), checks it, and after
// unmounting compares the source file with the same image built on a plain
// directory.
func TestQemu_Qcow2(t *testing.T) {
	requireTools(t, "qemu-img", "qemu-io")
	m := testMount(t)
	ref := filepath.Join(scratchDir(t, "drfs-e2e-ref-"), "vm.qcow2")
	img := filepath.Join(m.Mnt, "vm.qcow2")

	writes := [][]string{
		{"none", "write -P 0x5a 0 8M", "write -P 0xa5 1G 4M", "aio_flush"},
		{"none", "aio_write -P 0x11 16M 1M", "aio_write -P 0x22 17M 1M", "aio_write -P 0x33 2047M 1M", "aio_flush"},
		{"writeback", "write -P 0x44 64M 3M", "write -z 65M 512k", "flush"},
		{"none", "write -P 0x66 4100k 8k", "write -P 0x77 1536M 64k", "aio_flush"},
	}
	reads := []string{
		"read -P 0x5a 0 4100k", "read -P 0x66 4100k 8k", "read -P 0x5a 4108k 4084k",
		"read -P 0xa5 1G 4M", "read -P 0x11 16M 1M", "read -P 0x22 17M 1M",
		"read -P 0x33 2047M 1M", "read -P 0x44 64M 1M", "read -P 0 65M 512k",
		"read -P 0x44 66M 1M", "read -P 0x77 1536M 64k", "read -P 0 512M 1M",
	}
	for _, target := range []string{img, ref} {
		mustRun(t, time.Minute, "qemu-img", "create", "-q", "-f", "qcow2", target, "2G")
		for _, w := range writes {
			qemuIO(t, target, w[0], w[1:]...)
		}
		qemuImgCheck(t, target)
		out := qemuIO(t, target, "none", reads...)
		if strings.Count(out, "read ") < len(reads) {
			t.Fatalf("qemu-io did not report %d reads on %s:\n%s", len(reads), target, out)
		}
	}
	// Converting reads the whole image through the mount and writes a second one.
	raw := filepath.Join(m.Mnt, "vm.raw")
	mustRun(t, 3*time.Minute, "qemu-img", "convert", "-t", "none", "-T", "none", "-f", "qcow2", "-O", "raw", img, raw)
	mustRun(t, 3*time.Minute, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img, raw)
	mustRun(t, 3*time.Minute, "qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", img, ref)

	m.Stop()
	srcImg := filepath.Join(m.Src, "vm.qcow2")
	if _, err := os.Stat(srcImg); err != nil {
		t.Fatalf("source image after stop: %v", err)
	}
	qemuImgCheck(t, srcImg)
	mustRun(t, 3*time.Minute, "qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", srcImg, ref)
	mustRun(t, 3*time.Minute, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", filepath.Join(m.Src, "vm.raw"), ref)
}
