package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"drfs/e2e/internal/blockfmt"
)

// lostBlocks compares a blockfmt file's blocks with the writes that must be there (offset ->
// lowest acceptable generation) and returns how many are missing (zeroes or an older
// generation), how many are damaged (torn, foreign or misplaced) and up to 10 examples.
func lostBlocks(blocks [][]byte, want map[int64]uint64) (lost, damaged int, examples []string) {
	for i, b := range blocks {
		off := int64(i) * blockfmt.Size
		blk, gen, zero, ok := blockfmt.Parse(b)
		w, must := want[off]
		var msg string
		switch {
		case !ok:
			damaged++
			msg = "torn or foreign data"
		case zero && must:
			lost++
			msg = fmt.Sprintf("zeroes, but gen %d was fsynced", w)
		case zero:
		case blk != uint64(i):
			damaged++
			msg = fmt.Sprintf("holds block %d", blk)
		case gen < w:
			lost++
			msg = fmt.Sprintf("gen %d, but gen %d was fsynced", gen, w)
		}
		if msg != "" && len(examples) < 10 {
			examples = append(examples, fmt.Sprintf("block %d (off %d): %s", i, off, msg))
		}
	}
	for off := range want {
		if int(off/blockfmt.Size) >= len(blocks) {
			lost++
			if len(examples) < 10 {
				examples = append(examples, fmt.Sprintf("off %d: beyond the end of the file (%d blocks)", off, len(blocks)))
			}
		}
	}
	return lost, damaged, examples
}

// TestPowerLoss_LazyFS runs drfs with its source on one LazyFS disk and its state (journal) on
// another, a guest writing O_DIRECT 4 KiB blocks with an fdatasync every 16 writes while
// checkpoints run every 2 s, then kills drfs and cuts the power of the source disk, the
// journal disk or both: every block the guest fsynced must come back (invariants 2 and 7).
func TestPowerLoss_LazyFS(t *testing.T) {
	for _, lose := range []string{"source", "journal", "source+journal"} {
		t.Run(lose, func(t *testing.T) { powerLossRun(t, lose) })
	}
}

func powerLossRun(t *testing.T, lose string) {
	requireTools(t)
	requireBuilt(t, crashWriter, "e2e/internal/crashwriter")
	srcDisk := startLazyFS(t, "src")
	stateDisk := startLazyFS(t, "state")
	m := testMountWith(t, MountOptions{
		Src:   filepath.Join(srcDisk.Mnt, "src"),
		State: filepath.Join(stateDisk.Mnt, "state"),
		Args:  []string{"--checkpoint-interval", "2s"},
	})
	const nblocks = 16384 // 64 MiB
	disk := filepath.Join(m.Mnt, "disk.img")
	makeBlockFile(t, disk, nblocks)
	logPath := filepath.Join(m.Logs, "writes.log")
	syncLog := filepath.Join(m.Logs, "fsynced.log")
	w := startCrashWriter(t, disk, logPath, nblocks, "60s", "-synclog", syncLog)
	// Long enough for two or three checkpoints while the guest writes.
	select {
	case <-w.done:
		t.Fatalf("writer exited before the crash: %v\n%s", w.err, w.out.String())
	case <-time.After(6 * time.Second):
	}
	m.Kill()
	st := m.Status() // not while running: unix sockets cannot be bound on LazyFS
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("writer still running 20s after the daemon was killed")
	}
	t.Logf("writer: %s", strings.TrimSpace(w.out.String()))
	fsynced, nsynced := parseWriterLog(t, syncLog)
	if len(fsynced) < 200 {
		t.Fatalf("only %d fsynced blocks in 6 s; the test proves nothing", len(fsynced))
	}
	if *st.CheckpointSeq == 0 {
		t.Fatalf("no checkpoint ran in 6 s with --checkpoint-interval 2s (status %s); the test proves nothing", st.raw)
	}
	if strings.Contains(lose, "source") {
		srcDisk.PowerLoss()
	}
	if strings.Contains(lose, "journal") {
		stateDisk.PowerLoss()
	}
	if err := m.TryRemount(); err != nil {
		t.Fatalf("power loss (%s disk): drfs does not mount again: %v", lose, err)
	}
	lost, damaged, ex := lostBlocks(readBlocks(t, disk, true), fsynced)
	t.Logf("power loss (%s disk) after checkpoint seq %d: %d fsynced writes to %d blocks, %d lost, %d damaged",
		lose, *st.CheckpointSeq, nsynced, len(fsynced), lost, damaged)
	if lost+damaged > 0 {
		t.Errorf("power loss (%s disk): %d of %d fsynced blocks lost, %d damaged (%d bytes); for example:\n  %s",
			lose, lost, len(fsynced), damaged, int64(lost+damaged)*blockfmt.Size, strings.Join(ex, "\n  "))
	}
}
