package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

var fioBad = regexp.MustCompile(`(?i)verify: bad|bad magic|crc32c: verify failed|err=\s*[1-9]|fio: .*(error|fail)`)

// fioArgs is the workload: 4 jobs, each its own 64 MiB file, 4k random
// O_DIRECT writes at QD8 with crc32c verification.
func fioArgs(dir string, extra ...string) []string {
	args := []string{
		"--name=drfs-verify", "--directory=" + dir,
		"--rw=randwrite", "--bs=4k", "--size=64M", "--numjobs=4",
		"--ioengine=libaio", "--iodepth=8", "--direct=1",
		"--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0", "--randrepeat=1", "--randseed=4242",
		"--group_reporting", "--output-format=normal",
	}
	return append(args, extra...)
}

func runFio(t *testing.T, args []string) string {
	t.Helper()
	out, err := run(t, 4*time.Minute, "fio", args...)
	if err != nil || fioBad.MatchString(out) {
		t.Fatalf("fio %v: err=%v\n%s", args, err, out)
	}
	return out
}

// TestFio_Verify writes with fio and verifies on the mount, then verifies the
// same workload on the source files after unmounting.
func TestFio_Verify(t *testing.T) {
	requireTools(t, "fio")
	m := testMount(t)
	out := runFio(t, fioArgs(m.Mnt))
	t.Logf("fio on mount:\n%s", out)
	m.Stop()
	for j := 0; j < 4; j++ {
		p := filepath.Join(m.Src, fmt.Sprintf("drfs-verify.%d.0", j))
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("fio file missing in source after stop: %v", err)
		}
		if st.Size() != 64<<20 {
			t.Errorf("%s: size %d, want %d", p, st.Size(), 64<<20)
		}
	}
	out = runFio(t, fioArgs(m.Src, "--verify_only"))
	if !regexp.MustCompile(`(?m)READ:.*io=256MiB`).MatchString(out) {
		t.Fatalf("fio --verify_only did not verify all 256 MiB:\n%s", out)
	}

	// Negative control: the verification must notice a corrupted block.
	f, err := os.OpenFile(filepath.Join(m.Src, "drfs-verify.0.0"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 4096), 12<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := run(t, 4*time.Minute, "fio", fioArgs(m.Src, "--verify_only")...); err == nil && !fioBad.MatchString(out) {
		t.Fatalf("fio --verify_only did not detect a zeroed block (verification is vacuous):\n%s", out)
	}
}
