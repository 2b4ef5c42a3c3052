package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"drfs/e2e/internal/blockfmt"
	"drfs/internal/faultproxy"
)

// parseWriterLog reads a crashwriter completion log: last generation per offset.
func parseWriterLog(t testing.TB, path string) (map[int64]uint64, int) {
	t.Helper()
	last := map[int64]uint64{}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var off int64
		var gen uint64
		if _, err := fmt.Sscanf(sc.Text(), "%d %d", &off, &gen); err != nil {
			t.Fatalf("bad writer log line %q: %v", sc.Text(), err)
		}
		if gen > last[off] {
			last[off] = gen
		}
		n++
	}
	return last, n
}

// checkWriterBlocks requires every logged write to be present in the
// blockfmt file at path (a later generation is fine: it may have been
// written but not logged before the crash).
func checkWriterBlocks(t *testing.T, where, path string, nblocks int, last map[int64]uint64) {
	t.Helper()
	checkLoggedBlocks(t, where, readBlocks(t, path, false), nblocks, last)
}

// startProxy starts a fault proxy to target, closed at cleanup.
func startProxy(t testing.TB, target string, f faultproxy.Faults) *faultproxy.Proxy {
	t.Helper()
	px, err := faultproxy.Start("127.0.0.1:0", target, f)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(func() { px.Close() })
	return px
}

// TestReplication_Kill9Primary kills the primary with SIGKILL while it ships
// a crash writer's O_DIRECT writes, remounts it and checks that the replica
// converges to the source and holds every write that returned.
func TestReplication_Kill9Primary(t *testing.T) {
	requireTools(t)
	requireBuilt(t, crashWriter, "e2e/internal/crashwriter")
	r := startReplica(t, "", "")
	m := testMountWith(t, MountOptions{Args: r.MountArgs("--interval", "continuous")})
	const nblocks = 8192 // 32 MiB
	disk := filepath.Join(m.Mnt, "disk.img")
	makeBlockFile(t, disk, nblocks)
	m.Sync(time.Minute)
	logPath := filepath.Join(m.Logs, "writes.log")
	w := startCrashWriter(t, disk, logPath, nblocks, "60s")
	// Kill once the replica has acknowledged some of the writer's logs.
	var acked0 uint64
	if st, ok := m.statusQuiet(); ok {
		acked0 = st.AckedSeq
	}
	time.Sleep(2 * time.Second)
	if !waitFor(20*time.Second, func() bool { st, ok := m.statusQuiet(); return ok && st.AckedSeq > acked0+100 }) {
		st, _ := m.statusQuiet()
		t.Fatalf("replica acknowledged nothing of the writer's records in 20s: %s", st.raw)
	}
	st, _ := m.statusQuiet()
	t.Logf("status at the kill: %s", st.raw)
	m.Kill()
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("writer still running 20s after the primary was killed")
	}
	t.Logf("writer: %s", strings.TrimSpace(w.out.String()))
	last, n := parseWriterLog(t, logPath)
	if n < 100 {
		t.Fatalf("only %d writes completed; the test proves nothing", n)
	}
	t.Logf("%d completed writes to %d blocks", n, len(last))

	m.Remount()
	acked := m.Sync(3 * time.Minute)
	data := r.DataDir(m.Volume)
	requireTreesEqual(t, m.Src, data)
	checkWriterBlocks(t, "replica", filepath.Join(data, "disk.img"), nblocks, last)
	rst := readReplicaState(t, r.Dir, m.Volume)
	if rst.Applied != acked || !rst.Consistent {
		t.Errorf("replica: applied %d consistent %v; primary acked %d", rst.Applied, rst.Consistent, acked)
	}
	checkPointChain(t, rst)
	checkPoints(t, replicaPoints(t, r.Dir, m.Volume), rst.Applied)
}

// burstWriter rewrites a file of nchunks 64 KiB chunks in a fixed permuted
// order, one O_DIRECT pwrite per chunk, every chunk of burst g filled with
// blockfmt blocks of generation g. Any log boundary therefore leaves the
// file in a "permutation prefix" state: chunks perm[:k] at gen g+1, the rest
// at gen g. A half-applied (coalesced, offset-ordered) log does not.
type burstWriter struct {
	path    string
	nchunks int
	perm    []int
}

const burstChunk = 64 << 10

func newBurstWriter(path string, nchunks int) *burstWriter {
	return &burstWriter{path: path, nchunks: nchunks, perm: rand.New(rand.NewPCG(7, 7)).Perm(nchunks)}
}

func (bw *burstWriter) burst(g uint64) error {
	fd, err := unix.Open(bw.path, unix.O_RDWR|unix.O_CREAT|unix.O_DIRECT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf, err := unix.Mmap(-1, 0, burstChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(buf)
	for _, c := range bw.perm {
		for b := 0; b < burstChunk/blockfmt.Size; b++ {
			blk := uint64(c*burstChunk/blockfmt.Size + b)
			blockfmt.Fill(buf[b*blockfmt.Size:], blk, g)
		}
		if _, err := unix.Pwrite(fd, buf, int64(c)*burstChunk); err != nil {
			return fmt.Errorf("pwrite chunk %d gen %d: %w", c, g, err)
		}
	}
	return unix.Fdatasync(fd)
}

// check returns "" when the file at p is in a permutation-prefix state.
func (bw *burstWriter) check(t *testing.T, p string) string {
	blocks := readBlocks(t, p, false)
	gens := make([]uint64, bw.nchunks)
	per := burstChunk / blockfmt.Size
	for c := 0; c < bw.nchunks; c++ {
		for b := 0; b < per; b++ {
			i := c*per + b
			var g uint64
			if i < len(blocks) {
				blk, gen, zero, ok := blockfmt.Parse(blocks[i])
				switch {
				case !ok:
					return fmt.Sprintf("chunk %d block %d: torn or foreign data", c, b)
				case !zero && blk != uint64(i):
					return fmt.Sprintf("chunk %d block %d holds block %d", c, b, blk)
				case !zero:
					g = gen
				}
			}
			if b == 0 {
				gens[c] = g
			} else if gens[c] != g {
				return fmt.Sprintf("chunk %d is torn: block 0 gen %d, block %d gen %d", c, gens[c], b, g)
			}
		}
	}
	hi := gens[bw.perm[0]]
	lo := hi
	for j, c := range bw.perm {
		g := gens[c]
		if g > lo || (hi-g) > 1 {
			seq := make([]uint64, 0, 16)
			for _, c2 := range bw.perm[max(0, j-8):min(len(bw.perm), j+8)] {
				seq = append(seq, gens[c2])
			}
			return fmt.Sprintf("not at a log boundary: in write order, chunk #%d (chunk %d) has gen %d after gen %d (gens around it: %v)", j, c, g, lo, seq)
		}
		lo = g
	}
	return ""
}

// TestReplication_Kill9Replica kills `drfs serve` with SIGKILL while it
// applies a burst of large writes, restarts it with the primary held off,
// checks that it rolled back to a log boundary, then lets it converge.
func TestReplication_Kill9Replica(t *testing.T) {
	requireTools(t)
	r := startReplica(t, "", "")
	px := startProxy(t, r.Addr, faultproxy.Faults{})
	m := testMountWith(t, MountOptions{Args: []string{"--replica", "http://" + px.Addr(), "--insecure", "--interval", "continuous"}})
	bw := newBurstWriter(filepath.Join(m.Mnt, "burst.img"), 256) // 16 MiB
	if err := bw.burst(1); err != nil {
		t.Fatal(err)
	}
	m.Sync(time.Minute)
	data := r.DataDir(m.Volume)

	const bursts = 8
	var done atomic.Int64
	werr := make(chan error, 1)
	go func() {
		for g := uint64(2); g <= bursts; g++ {
			if err := bw.burst(g); err != nil {
				werr <- err
				return
			}
			done.Store(int64(g))
		}
		werr <- nil
	}()
	// Kill while a log is being applied, a few bursts in: poll state.json
	// for an "applying" mark.
	waitFor(20*time.Second, func() bool { return done.Load() >= 3 })
	var killedApplying bool
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(r.Dir, m.Volume, "state", "state.json")); err == nil && bytes.Contains(b, []byte(`"applying"`)) {
			killedApplying = true
			time.Sleep(15 * time.Millisecond) // into the data writes of a ~16 MiB log
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !killedApplying {
		t.Logf("never saw an applying mark in state.json in 20s; killing anyway (bursts done: %d)", done.Load())
	}
	r.Kill()
	px.SetFaults(faultproxy.Faults{RefuseProb: 1}) // hold the primary off while the replica restarts
	killState := readReplicaState(t, r.Dir, m.Volume)
	t.Logf("replica state after SIGKILL: applied %d applying %+v (bursts done: %d)", killState.Applied, killState.Applying, done.Load())
	if killState.Applying != nil {
		if msg := bw.check(t, filepath.Join(data, "burst.img")); msg != "" {
			t.Logf("as expected, the killed replica's data is mid-log: %s", msg)
		} else {
			t.Logf("the killed replica's data happened to be at a boundary-like state")
		}
	}
	select {
	case err := <-werr:
		if err != nil {
			t.Fatalf("writes on the primary failed while the replica was down: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("writer still running 2 min after the replica was killed (guest writes blocked?)")
	}

	r.Start()
	// Opening the volume rolls an interrupted apply back.
	resp, err := http.Get("http://" + r.Addr + "/v1/volumes/" + m.Volume)
	if err != nil {
		t.Fatalf("GET volume on the restarted replica: %v", err)
	}
	resp.Body.Close()
	rst := readReplicaState(t, r.Dir, m.Volume)
	t.Logf("replica state after restart: applied %d consistent %v applying %+v", rst.Applied, rst.Consistent, rst.Applying)
	if rst.Applying != nil {
		t.Errorf("restarted replica still marks an apply in progress: %+v", rst.Applying)
	}
	if !rst.Consistent {
		t.Errorf("restarted replica is not consistent")
	}
	if killState.Applying != nil && rst.Applied != killState.Applied && rst.Applied != killState.Applying.To {
		t.Errorf("after restart applied_seq %d: neither the last committed %d nor the interrupted log's end %d",
			rst.Applied, killState.Applied, killState.Applying.To)
	}
	if msg := bw.check(t, filepath.Join(data, "burst.img")); msg != "" {
		t.Errorf("restarted replica exposes a half-applied log: %s", msg)
	}
	checkPointChain(t, rst)

	px.SetFaults(faultproxy.Faults{})
	acked := m.Sync(3 * time.Minute)
	requireTreesEqual(t, m.Src, data)
	final := readReplicaState(t, r.Dir, m.Volume)
	if final.Applied != acked || !final.Consistent {
		t.Errorf("replica after convergence: applied %d consistent %v, primary acked %d", final.Applied, final.Consistent, acked)
	}
	checkPointChain(t, final)
	checkPoints(t, replicaPoints(t, r.Dir, m.Volume), final.Applied)
}

// TestReplication_FaultyNetwork ships through a proxy that cuts, truncates,
// delays and bit-flips the traffic, then clears the faults and checks that
// the replica converged, corrupt logs were caught and retried, and recovery
// points form one chain.
func TestReplication_FaultyNetwork(t *testing.T) {
	requireTools(t)
	r := startReplica(t, "", "")
	faults := faultproxy.Faults{DropProb: 0.3, MaxCutBytes: 2 << 20, FlipProb: 0.05, TruncateProb: 0.1, Delay: time.Millisecond,
		Seed: 12} // per-connection draws for seed 12: #0 cut+truncated, #1 truncated, #2 and #3 cut, #4 clean
	px := startProxy(t, r.Addr, faults)
	metrics := freeAddr(t)
	m := testMountWith(t, MountOptions{Args: []string{"--replica", "http://" + px.Addr(), "--insecure",
		"--interval", "continuous", "--metrics", metrics}})

	rng := rand.New(rand.NewPCG(5, 5))
	const burstBytes = 5 << 20
	for b := 0; b < 6; b++ {
		f, err := os.OpenFile(filepath.Join(m.Mnt, fmt.Sprintf("disk%d.raw", b%3)), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < burstBytes; n += 256 << 10 {
			off := int64(rng.IntN(64)) * (256 << 10)
			if _, err := f.WriteAt(randBytes(uint64(b*1000+n), 256<<10), off); err != nil {
				t.Fatalf("write under network faults: %v", err)
			}
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // let it struggle
	st, _ := m.statusQuiet()
	t.Logf("status under faults: %s", st.raw)
	t.Logf("proxy stats under faults: %+v", px.Stats())
	ps := px.Stats()
	px.SetFaults(faultproxy.Faults{})
	if ps.Dropped+ps.Truncated == 0 || ps.Flipped == 0 {
		t.Errorf("test setup: the proxy cut/truncated %d and flipped %d chunks; the faults were not exercised (%+v)", ps.Dropped+ps.Truncated, ps.Flipped, ps)
	}
	acked := m.Sync(3 * time.Minute)
	data := r.DataDir(m.Volume)
	requireTreesEqual(t, m.Src, data)

	sm := scrapeMetrics(t, metrics)
	rm := scrapeMetrics(t, r.Metrics)
	requireMetric(t, sm, "drfs_shipper_logs_corrupted_total", "drfs_shipper_retries_total", "drfs_shipper_wire_bytes_total")
	requireMetric(t, rm, "drfs_replica_logs_rejected_total", "drfs_replica_logs_applied_total")
	t.Logf("shipper: logs=%v wire=%v retries=%v corrupted=%v; replica: applied=%v rejected=%v",
		sm["drfs_shipper_logs_total"], sm["drfs_shipper_wire_bytes_total"], sm["drfs_shipper_retries_total"],
		sm["drfs_shipper_logs_corrupted_total"], rm["drfs_replica_logs_applied_total"], rm["drfs_replica_logs_rejected_total"])
	if rm["drfs_replica_logs_rejected_total"] == 0 && sm["drfs_shipper_logs_corrupted_total"] == 0 {
		t.Errorf("bit flips were injected (proxy: %+v) but neither drfs_replica_logs_rejected_total nor drfs_shipper_logs_corrupted_total counted one", px.Stats())
	}
	final, _ := m.statusQuiet()
	if sm["drfs_shipper_retries_total"] == 0 && final.Retries == 0 {
		t.Errorf("connections were cut but no retry was counted (metric and status retries are 0)")
	}
	rst := readReplicaState(t, r.Dir, m.Volume)
	if rst.Applied != acked || !rst.Consistent {
		t.Errorf("replica: applied %d consistent %v, primary acked %d", rst.Applied, rst.Consistent, acked)
	}
	checkPointChain(t, rst)
	checkPoints(t, replicaPoints(t, r.Dir, m.Volume), rst.Applied)
}

// TestReplication_JournalOverflow writes while the replica is away until the
// journal passes --journal-max, checks that writes never stall, the journal
// stays bounded and the primary reports "degraded", then brings the replica
// back and checks that only the changed blocks travel.
func TestReplication_JournalOverflow(t *testing.T) {
	requireTools(t)
	r := startReplica(t, "", "")
	metrics := freeAddr(t)
	const journalMax = 16 << 20
	m := testMountWith(t, MountOptions{Args: r.MountArgs("--interval", "continuous", "--journal-max", "16M", "--metrics", metrics)})

	// A 256 MiB file of incompressible data, replicated while the replica is up.
	const fileSize = 256 << 20
	big := filepath.Join(m.Mnt, "big.img")
	f, err := os.OpenFile(big, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	chunk := randBytes(60, 4<<20)
	for off := int64(0); off < fileSize; off += int64(len(chunk)) {
		chunk[0], chunk[1] = byte(off>>20), byte(off>>28) // every chunk differs
		if _, err := f.WriteAt(chunk, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	m.Sync(3 * time.Minute)
	sm0 := scrapeMetrics(t, metrics)
	t.Logf("after the initial copy: wire=%.0f degraded=%.0f", sm0["drfs_shipper_wire_bytes_total"], sm0["drfs_shipper_journal_degraded_total"])
	if sm0["drfs_shipper_journal_degraded_total"] > 0 {
		t.Logf("NOTE: the journal degraded %.0f times while the replica was up and acknowledging", sm0["drfs_shipper_journal_degraded_total"])
	}
	r.Stop()

	// Poll status while writing.
	var mu sync.Mutex
	var maxJournal uint64
	states := map[string]int{}
	stopPoll := make(chan struct{})
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		for {
			if st, ok := m.statusQuiet(); ok {
				mu.Lock()
				if st.JournalBytes != nil && *st.JournalBytes > maxJournal {
					maxJournal = *st.JournalBytes
				}
				states[st.ReplicationState]++
				mu.Unlock()
			}
			select {
			case <-stopPoll:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()

	// 64 MiB of random 4 KiB writes, confined to every fourth 64 KiB block
	// (the replica's hash block size) across the whole file: the coarse
	// dirty-extent map covers the whole file, but only a quarter of its
	// blocks differ.
	const hashBlock = 64 << 10
	dirty := map[int64]bool{}
	rng := rand.New(rand.NewPCG(9, 9))
	buf := make([]byte, 4096)
	cc := rand.NewChaCha8([32]byte{61})
	var maxLat time.Duration
	t0 := time.Now()
	for i := 0; i < (64<<20)/4096; i++ {
		hb := int64(rng.IntN(fileSize/hashBlock/4)) * 4
		off := hb*hashBlock + int64(rng.IntN(hashBlock/4096))*4096
		cc.Read(buf) // incompressible: wire bytes then measure blocks, not zstd
		s := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatalf("write %d while the replica is away: %v", i, err)
		}
		if d := time.Since(s); d > maxLat {
			maxLat = d
		}
		dirty[hb] = true
		if i%2048 == 2047 {
			if err := f.Sync(); err != nil {
				t.Fatalf("fsync while the replica is away: %v", err)
			}
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Logf("64 MiB of 4 KiB writes in %v, slowest write %v, %d distinct 64 KiB blocks dirty", time.Since(t0).Round(time.Millisecond), maxLat, len(dirty))
	if maxLat > 5*time.Second {
		t.Errorf("a write took %v while the replica was away (the shipper must never block writes)", maxLat)
	}
	sawDegraded := waitFor(15*time.Second, func() bool {
		st, ok := m.statusQuiet()
		return ok && st.ReplicationState == "degraded"
	})
	close(stopPoll)
	<-pollDone
	st := m.Status()
	t.Logf("status with the replica away: %s", st.raw)
	mu.Lock()
	t.Logf("replication states seen while writing: %v; max journal_bytes %d", states, maxJournal)
	if !sawDegraded && states["degraded"] == 0 {
		t.Errorf("replication_state never became \"degraded\" after %d MiB written with --journal-max 16M and no replica (states seen: %v)", 64, states)
	}
	// Journal segments are 64 MiB (journal.DefaultSegmentSize), so
	// journal_bytes moves in 64 MiB steps. While writing, the active segment
	// and one not yet released may coexist: at most --journal-max + two
	// segments. Once degraded, the folded records are released by the
	// checkpoint: at most --journal-max + one segment remains, where keeping
	// the ~66 MiB of unshipped 4 KiB records would need two (128 MiB).
	const seg = 64 << 20
	if limit := uint64(journalMax + 2*seg); maxJournal > limit {
		t.Errorf("journal_bytes reached %d while writing with the replica away, want <= %d (--journal-max 16M + two 64 MiB segments)", maxJournal, limit)
	}
	mu.Unlock()
	var endJournal uint64
	waitFor(10*time.Second, func() bool {
		st, ok := m.statusQuiet()
		if ok && st.JournalBytes != nil {
			endJournal = *st.JournalBytes
		}
		return ok && endJournal <= journalMax+seg
	})
	t.Logf("journal_bytes after the writes, replica still away: %d", endJournal)
	if limit := uint64(journalMax + seg); endJournal > limit {
		t.Errorf("journal_bytes %d after 64 MiB written with the replica away, want <= %d (--journal-max 16M + one 64 MiB segment): unshipped records were not released", endJournal, limit)
	}
	sm1 := scrapeMetrics(t, metrics)
	if sm1["drfs_shipper_journal_degraded_total"] <= sm0["drfs_shipper_journal_degraded_total"] {
		t.Errorf("drfs_shipper_journal_degraded_total did not grow while the replica was away (%v -> %v)",
			sm0["drfs_shipper_journal_degraded_total"], sm1["drfs_shipper_journal_degraded_total"])
	}

	r.Start()
	acked := m.Sync(3 * time.Minute)
	sm2 := scrapeMetrics(t, metrics)
	requireTreesEqual(t, m.Src, r.DataDir(m.Volume))
	wire := sm2["drfs_shipper_wire_bytes_total"] - sm1["drfs_shipper_wire_bytes_total"]
	resync := sm2["drfs_shipper_resync_bytes_total"] - sm1["drfs_shipper_resync_bytes_total"]
	dirtyBytes := float64(len(dirty)) * hashBlock
	t.Logf("after the replica returned: wire %.1f MiB (resync %.1f MiB); dirty 64 KiB blocks %.1f MiB; file %d MiB",
		wire/(1<<20), resync/(1<<20), dirtyBytes/(1<<20), fileSize>>20)
	// Only the differing 64 KiB blocks may travel (incompressible data, so
	// about dirtyBytes), plus framing: allow 10% + 4 MiB. That is about 30%
	// of the file, so a full resync (or resending every dirty 4 MiB extent)
	// fails it.
	if limit := dirtyBytes*1.1 + 4<<20; wire > limit {
		t.Errorf("%.1f MiB travelled after the replica returned, want <= %.1f MiB (the %.1f MiB of changed 64 KiB blocks + 10%% + 4 MiB)",
			wire/(1<<20), limit/(1<<20), dirtyBytes/(1<<20))
	}
	if wire > fileSize/2 {
		t.Errorf("%.1f MiB travelled after the replica returned: more than half the %d MiB file", wire/(1<<20), fileSize>>20)
	}
	st2 := m.Status()
	if st2.ReplicationState != "replicating" {
		t.Errorf("replication_state %q after convergence, want replicating", st2.ReplicationState)
	}
	rst := readReplicaState(t, r.Dir, m.Volume)
	if rst.Applied != acked || !rst.Consistent {
		t.Errorf("replica: applied %d consistent %v, primary acked %d", rst.Applied, rst.Consistent, acked)
	}
}
