package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"drfs/e2e/internal/blockfmt"

	"golang.org/x/sys/unix"
)

// readBlocks reads a whole file (O_DIRECT when direct) in 4 KiB blocks.
func readBlocks(t *testing.T, path string, direct bool) [][]byte {
	t.Helper()
	flags := unix.O_RDONLY | unix.O_CLOEXEC
	if direct {
		flags |= unix.O_DIRECT
	}
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	const chunk = 1 << 20
	buf, err := unix.Mmap(-1, 0, chunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	var blocks [][]byte
	for off := int64(0); off < st.Size; off += chunk {
		n, err := unix.Pread(fd, buf, off)
		if err != nil {
			t.Fatalf("pread %s at %d: %v", path, off, err)
		}
		if n == 0 {
			break
		}
		for i := 0; i+blockfmt.Size <= n; i += blockfmt.Size {
			blocks = append(blocks, bytes.Clone(buf[i:i+blockfmt.Size]))
		}
	}
	return blocks
}

// coversResync reports whether the resync list covers [off, off+n) of path.
func coversResync(rs []ResyncRegion, path string, off, n int64) bool {
	for _, r := range rs {
		if strings.TrimPrefix(r.Path, "/") != path {
			continue
		}
		if r.Len == -1 || (r.Off <= off && off+n <= r.Off+r.Len) {
			return true
		}
	}
	return false
}

// TestCrash_Kill9DuringDirectWrites kills the daemon with SIGKILL while four
// writers issue O_DIRECT 4 KiB writes, remounts, and checks that every write
// that returned to the writer is present (invariant 1).
func TestCrash_Kill9DuringDirectWrites(t *testing.T) {
	requireTools(t)
	requireBuilt(t, crashWriter, "e2e/internal/crashwriter")
	m := testMount(t)
	const nblocks = 16384 // 64 MiB
	disk := filepath.Join(m.Mnt, "disk.img")
	makeBlockFile(t, disk, nblocks)
	logPath := filepath.Join(m.Logs, "writes.log")
	w := startCrashWriter(t, disk, logPath, nblocks, "60s")

	select {
	case <-w.done:
		t.Fatalf("writer exited before the crash: %v\n%s", w.err, w.out.String())
	case <-time.After(3 * time.Second):
	}
	m.Kill()
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("writer still running 20s after the daemon was killed (hung in the kernel?)")
	}
	t.Logf("writer: %s", strings.TrimSpace(w.out.String()))
	if !strings.Contains(w.out.String(), "err=\"pwrite") && !strings.Contains(w.out.String(), "err=\"fdatasync") {
		t.Errorf("writer did not stop on a write/fdatasync error, so no write was in flight at the kill:\n%s", w.out.String())
	}

	// The completion log: last generation per offset.
	last := map[int64]uint64{}
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	nrec := 0
	for sc.Scan() {
		var off int64
		var gen uint64
		if _, err := fmt.Sscanf(sc.Text(), "%d %d", &off, &gen); err != nil {
			t.Fatalf("bad log line %q: %v", sc.Text(), err)
		}
		if gen > last[off] {
			last[off] = gen
		}
		nrec++
	}
	f.Close()
	if nrec < 100 {
		t.Fatalf("only %d writes completed in 3s; the test proves nothing", nrec)
	}
	t.Logf("%d completed writes to %d distinct blocks", nrec, len(last))

	st := m.Status()
	t.Logf("status after kill: %s", st.raw)
	if *st.Clean {
		t.Errorf("drfs status after SIGKILL: clean=true, want false\n%s", st.raw)
	}

	m.Remount()
	st2 := m.Status()
	t.Logf("status after remount: %s", st2.raw)
	// Invariant 2: every region written since the last checkpoint was hot
	// and must be listed for resync after the crash (before or after
	// recovery). The volume was created by this mount, so with no checkpoint
	// since (checkpoint_seq 0 at the kill) that is every logged write.
	resync := append(append([]ResyncRegion(nil), st.Resync...), st2.Resync...)
	uncovered := 0
	for off := range last {
		if !coversResync(resync, "disk.img", off, blockfmt.Size) {
			uncovered++
		}
	}
	switch {
	case !coversResync(resync, "disk.img", 0, 1) && uncovered == len(last):
		t.Errorf("drfs status lists no resync region for disk.img after a crash during writes (invariant 2: hot regions must be resynced)")
	case uncovered > 0 && *st.CheckpointSeq == 0:
		t.Errorf("drfs status resync regions miss %d of %d blocks written since the last checkpoint (invariant 2)", uncovered, len(last))
	case uncovered > 0:
		t.Logf("%d of %d written blocks not in resync (a checkpoint at seq %d may have covered them)", uncovered, len(last), *st.CheckpointSeq)
	}

	checkLoggedBlocks(t, "mount after remount", readBlocks(t, disk, true), nblocks, last)
	// The mount still works for writes.
	if err := os.WriteFile(filepath.Join(m.Mnt, "after-crash"), []byte("ok"), 0o644); err != nil {
		t.Errorf("write after remount: %v", err)
	}
	m.Stop()
	checkLoggedBlocks(t, "source after stop", readBlocks(t, filepath.Join(m.Src, "disk.img"), false), nblocks, last)
	if st := m.Status(); !*st.Clean {
		t.Errorf("drfs status after a clean stop: clean=false\n%s", st.raw)
	}
}

// checkLoggedBlocks requires every write the crash writer logged as completed (last: offset ->
// generation) to be in blocks (a later generation is fine: it may have been written but not
// logged before the crash), and nothing torn or misplaced.
func checkLoggedBlocks(t *testing.T, where string, blocks [][]byte, nblocks int, last map[int64]uint64) {
	t.Helper()
	if len(blocks) != nblocks {
		t.Fatalf("%s: %d blocks, want %d", where, len(blocks), nblocks)
	}
	bad := 0
	for i, b := range blocks {
		off := int64(i) * blockfmt.Size
		blk, gen, zero, ok := blockfmt.Parse(b)
		want, logged := last[off]
		var msg string
		switch {
		case !ok:
			msg = "torn or foreign data"
		case zero && logged:
			msg = fmt.Sprintf("zeroes, but write gen %d returned", want)
		case zero:
		case blk != uint64(i):
			msg = fmt.Sprintf("holds block %d", blk)
		case gen < want:
			msg = fmt.Sprintf("gen %d, but gen %d returned (lost write)", gen, want)
		}
		if msg != "" {
			bad++
			if bad <= 10 {
				t.Errorf("%s: block %d (off %d): %s", where, i, off, msg)
			}
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d bad blocks in total", where, bad)
	}
}

// makeBlockFile creates path as a file of nblocks zero blocks for the crash writer.
func makeBlockFile(t *testing.T, path string, nblocks int) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(nblocks)*blockfmt.Size); err != nil {
		t.Fatal(err)
	}
}

// writerRun is a running e2e/internal/crashwriter.
type writerRun struct {
	out  bytes.Buffer
	done chan struct{} // closed when it exited; err is set then
	err  error
}

// startCrashWriter runs the crash writer on disk (4 workers, fdatasync every 16 writes) for
// at most duration, logging each completed write to logPath; it is killed at cleanup. extra
// are more crashwriter flags (e.g. -synclog).
func startCrashWriter(t testing.TB, disk, logPath string, nblocks int, duration string, extra ...string) *writerRun {
	t.Helper()
	w := &writerRun{done: make(chan struct{})}
	args := []string{"-file", disk, "-log", logPath, "-blocks", strconv.Itoa(nblocks),
		"-workers", "4", "-sync", "16", "-duration", duration}
	cmd := exec.Command(crashWriter, append(args, extra...)...)
	cmd.Stdout, cmd.Stderr = &w.out, &w.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.err = cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			cmd.Process.Kill()
			<-w.done
		}
	})
	return w
}

// writeGen writes blocks [from, to) of path with generation gen and optionally fsyncs.
func writeGen(t *testing.T, path string, from, to int, gen uint64, fsync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, blockfmt.Size)
	for i := from; i < to; i++ {
		blockfmt.Fill(b, uint64(i), gen)
		if _, err := f.WriteAt(b, int64(i)*blockfmt.Size); err != nil {
			t.Fatalf("write %s block %d: %v", path, i, err)
		}
	}
	if fsync {
		if err := f.Sync(); err != nil {
			t.Fatalf("fsync %s: %v", path, err)
		}
	}
}

// TestCrash_PowerLossReplay models a power loss: after a checkpoint (clean
// stop) the source file is rolled back to its checkpointed content as if the
// page cache was lost, and the journal must replay the fsynced writes
// (invariant 2).
func TestCrash_PowerLossReplay(t *testing.T) {
	requireTools(t)
	m := testMount(t)
	const nblocks = 1024 // 4 MiB
	f := filepath.Join(m.Mnt, "f")
	writeGen(t, f, 0, nblocks, 1, true) // pattern A
	m.Stop()
	checkpointed, err := os.ReadFile(filepath.Join(m.Src, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if len(checkpointed) != nblocks*blockfmt.Size {
		t.Fatalf("source f after clean stop: %d bytes, want %d", len(checkpointed), nblocks*blockfmt.Size)
	}

	m.Remount()
	writeGen(t, f, 256, 512, 2, true)  // pattern B, fsynced
	writeGen(t, f, 768, 800, 3, false) // pattern C, not fsynced
	m.Kill()
	// Power loss: the source file loses everything since the checkpoint.
	if cur, err := os.ReadFile(filepath.Join(m.Src, "f")); err != nil {
		t.Fatal(err)
	} else if bytes.Equal(cur, checkpointed) {
		t.Fatalf("source f did not change after the fsynced writes (writes not reaching the source?)")
	}
	if err := os.WriteFile(filepath.Join(m.Src, "f"), checkpointed, 0o644); err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	t.Logf("status after kill: %s", st.raw)
	if *st.Clean {
		t.Errorf("drfs status after SIGKILL: clean=true, want false")
	}
	resyncOK := coversResync(st.Resync, "f", 256*blockfmt.Size, 256*blockfmt.Size)

	m.Remount()
	st2 := m.Status()
	t.Logf("status after remount: %s", st2.raw)
	if !resyncOK && !coversResync(st2.Resync, "f", 256*blockfmt.Size, 256*blockfmt.Size) {
		t.Errorf("drfs status lists no resync region covering f [1MiB, 2MiB) written since the checkpoint (invariant 2)")
	}
	check := func(where string, blocks [][]byte) {
		t.Helper()
		if len(blocks) != nblocks {
			t.Fatalf("%s: %d blocks, want %d", where, len(blocks), nblocks)
		}
		bad := 0
		for i, b := range blocks {
			blk, gen, zero, ok := blockfmt.Parse(b)
			var msg string
			switch {
			case !ok || zero:
				msg = "torn, foreign or zero data"
			case blk != uint64(i):
				msg = fmt.Sprintf("holds block %d", blk)
			case i >= 256 && i < 512 && gen != 2:
				msg = fmt.Sprintf("gen %d, want 2 (fsynced write lost: journal not replayed)", gen)
			case i >= 768 && i < 800 && gen != 1 && gen != 3:
				msg = fmt.Sprintf("gen %d, want 1 or 3", gen)
			case (i < 256 || i >= 512) && (i < 768 || i >= 800) && gen != 1:
				msg = fmt.Sprintf("gen %d, want 1", gen)
			}
			if msg != "" {
				bad++
				if bad <= 10 {
					t.Errorf("%s: block %d: %s", where, i, msg)
				}
			}
		}
		if bad > 10 {
			t.Errorf("%s: %d bad blocks in total", where, bad)
		}
	}
	check("mount after replay", readBlocks(t, f, false))
	m.Stop()
	check("source after stop", readBlocks(t, filepath.Join(m.Src, "f"), false))
}
