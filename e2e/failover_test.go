package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Failover end to end: unplanned promotion (latest and older point), planned
// failover with the guest pause, reverse and failback with delta-only
// catch-up, fencing of an old primary that keeps running (split brain),
// verify and seeds.

// promoteOut matches `drfs promote` output.
var promoteOut = regexp.MustCompile(`promoted volume (\S+) to generation (\d+) at seq (\d+) \((\d+) newer logs rolled back\)`)

// promoteResult is the parsed `drfs promote` output.
type promoteResult struct {
	Generation, Seq uint64
	RolledBack      int
	Out             string
}

// drfsPromote runs `drfs promote --dir DIR --volume V ARGS...` and requires
// success and the documented output.
func drfsPromote(t testing.TB, dir, vol string, args ...string) promoteResult {
	t.Helper()
	a := append([]string{"promote", "--dir", dir, "--volume", vol}, args...)
	out, err := drfsCmd(t, 2*time.Minute, a...)
	if err != nil {
		t.Fatalf("drfs %s: %v\n%s", strings.Join(a, " "), err, out)
	}
	t.Logf("drfs promote:\n%s", out)
	mm := promoteOut.FindStringSubmatch(out)
	if mm == nil {
		t.Fatalf("drfs promote printed no \"promoted volume V to generation G at seq N (K newer logs rolled back)\":\n%s", out)
	}
	res := promoteResult{Out: out}
	res.Generation, _ = strconv.ParseUint(mm[2], 10, 64)
	res.Seq, _ = strconv.ParseUint(mm[3], 10, 64)
	res.RolledBack, _ = strconv.Atoi(mm[4])
	want := "drfs mount --source " + filepath.Join(dir, vol, "data") + " --state " + filepath.Join(dir, vol, "primary")
	if !strings.Contains(out, want) {
		t.Errorf("drfs promote does not print the command to bring the volume up (%q):\n%s", want, out)
	}
	return res
}

// mountPromoted mounts the primary that `drfs promote` prepared on the
// replica directory dir.
func mountPromoted(t testing.TB, dir, vol string, args ...string) *Mount {
	t.Helper()
	return testMountWith(t, MountOptions{
		Src:    filepath.Join(dir, vol, "data"),
		State:  filepath.Join(dir, vol, "primary"),
		Volume: vol,
		Args:   args,
	})
}

// AuditEntry is one line of `drfs audit --json`.
type AuditEntry struct {
	Time      time.Time `json:"time"`
	Host      string    `json:"host"`
	User      string    `json:"user"`
	Action    string    `json:"action"`
	Volume    string    `json:"volume"`
	VolumeID  string    `json:"volume_id"`
	GenBefore uint64    `json:"generation_before"`
	GenAfter  uint64    `json:"generation_after"`
	Point     uint64    `json:"point_seq"`
	Forced    bool      `json:"forced"`
	Detail    string    `json:"detail"`
}

// drfsAudit runs `drfs audit ARGS... --json` and parses its lines.
func drfsAudit(t testing.TB, args ...string) []AuditEntry {
	t.Helper()
	out := mustRun(t, 30*time.Second, drfsBin, append(append([]string{"audit"}, args...), "--json")...)
	var es []AuditEntry
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		var e AuditEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("drfs audit --json: line is not JSON: %v\n%q", err, line)
		}
		es = append(es, e)
	}
	return es
}

// findAudit returns the last entry with the given action.
func findAudit(es []AuditEntry, action string) (AuditEntry, bool) {
	for i := len(es) - 1; i >= 0; i-- {
		if es[i].Action == action {
			return es[i], true
		}
	}
	return AuditEntry{}, false
}

// snapshotTree copies src to a fresh directory (with xattrs and hard links;
// compare with requireSameTree) and returns it.
func snapshotTree(t testing.TB, src, name string) string {
	t.Helper()
	dst := filepath.Join(scratchDir(t, "drfs-e2e-snap-"), name)
	mustRun(t, 2*time.Minute, "cp", "-a", "--sparse=auto", src, dst)
	return dst
}

// makeExt4Image makes an ext4 image at img (a path on a drfs mount) through
// a loop device with direct I/O and copies the given Go source packages into
// it; everything is unmounted and detached when it returns.
func makeExt4Image(t *testing.T, img, size string, pkgs ...string) {
	t.Helper()
	mustRun(t, time.Minute, "truncate", "-s", size, img)
	dev := strings.TrimSpace(mustRun(t, time.Minute, "losetup", "-f", "--show", "--direct-io=on", img))
	if !strings.HasPrefix(dev, "/dev/loop") {
		t.Fatalf("losetup printed %q", dev)
	}
	fsMnt := filepath.Join(scratchDir(t, "drfs-e2e-ext4-"), "m")
	if err := os.Mkdir(fsMnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mounted, detached := false, false
	cleanup := func() {
		if mounted {
			mounted = false
			if _, err := run(t, time.Minute, "umount", fsMnt); err != nil {
				forceUnmount(fsMnt)
			}
		}
		if !detached {
			detached = true
			run(t, time.Minute, "losetup", "-d", dev)
			waitLoopGone(t, dev)
		}
	}
	t.Cleanup(cleanup)
	mustRun(t, 2*time.Minute, "mkfs.ext4", "-q", "-F", dev)
	mustRun(t, time.Minute, "mount", "-t", "ext4", dev, fsMnt)
	mounted = true
	goroot := goRoot(t)
	if out, err := run(t, time.Minute, "go", "env", "GOROOT"); err == nil && strings.TrimSpace(out) != "" {
		goroot = strings.TrimSpace(out)
	}
	for _, p := range pkgs {
		mustRun(t, 2*time.Minute, "cp", "-a", filepath.Join(goroot, "src", p), filepath.Join(fsMnt, p))
	}
	cleanup()
}

// fioFailoverArgs: 4k random O_DIRECT writes with crc32c verification whose
// verify state is saved in (and loaded from) aux.
func fioFailoverArgs(file, aux string, extra ...string) []string {
	return append([]string{"--name=drfs-fo", "--filename=" + file, "--rw=randwrite", "--bs=4k", "--size=16M",
		"--ioengine=libaio", "--iodepth=8", "--direct=1", "--verify=crc32c", "--verify_fatal=1",
		"--aux-path=" + aux, "--randrepeat=1", "--randseed=4711", "--output-format=normal"}, extra...)
}

// writeAt writes b at off in an existing file p.
func writeAt(t testing.TB, p string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		t.Fatalf("write %s at %d: %v", p, off, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// wireBytes is drfs_shipper_wire_bytes_total of a primary's --metrics.
func wireBytes(t testing.TB, addr string) float64 {
	t.Helper()
	ms := scrapeMetrics(t, addr)
	requireMetric(t, ms, "drfs_shipper_wire_bytes_total", "drfs_shipper_resync_bytes_total")
	t.Logf("primary metrics: wire=%v resync=%v", ms["drfs_shipper_wire_bytes_total"], ms["drfs_shipper_resync_bytes_total"])
	return ms["drfs_shipper_wire_bytes_total"]
}

// divergedLogs lists the diverged change logs that `drfs reverse` saved.
func divergedLogs(dir, vol string) []string {
	ls, _ := filepath.Glob(filepath.Join(dir, vol, "state", "diverged", "*.dcl"))
	return ls
}

// drfsReverse runs `drfs reverse` and returns its output.
func drfsReverse(t testing.TB, state, dir string) string {
	t.Helper()
	out, err := drfsCmd(t, 2*time.Minute, "reverse", "--state", state, "--dir", dir)
	if err != nil {
		t.Fatalf("drfs reverse --state %s --dir %s: %v\n%s", state, dir, err, out)
	}
	t.Logf("drfs reverse:\n%s", out)
	return out
}

var pausedOut = regexp.MustCompile(`guests were paused for (\S+)`)

// drfsPlannedFailover runs `drfs failover --planned` and returns the
// reported guest pause.
func drfsPlannedFailover(t testing.TB, m *Mount) (time.Duration, string) {
	t.Helper()
	out, err := drfsCmd(t, 2*time.Minute, "failover", "--planned", "--state", m.State, "--timeout", "60s")
	if err != nil {
		st, _ := m.statusQuiet()
		t.Fatalf("drfs failover --planned: %v\n%s\nstatus: %s\n--- daemon output ---\n%s", err, out, st.raw, m.DaemonLog())
	}
	t.Logf("drfs failover --planned:\n%s", out)
	mm := pausedOut.FindStringSubmatch(out)
	if mm == nil {
		t.Fatalf("drfs failover --planned does not report the pause (\"guests were paused for X\"):\n%s", out)
	}
	d, err := time.ParseDuration(mm[1])
	if err != nil {
		t.Fatalf("drfs failover --planned: pause %q is not a duration: %v", mm[1], err)
	}
	return d, out
}

// TestFailover_Unplanned loses the primary (kill -9) after an acknowledged
// point and further unacknowledged writes, promotes the replica with --force
// and checks the promoted data with real clients before mounting it as the
// primary of generation 2.
func TestFailover_Unplanned(t *testing.T) {
	requireTools(t, "qemu-img", "qemu-io", "fio", "losetup", "mkfs.ext4", "e2fsck", "mount", "umount", "cp", "truncate")
	r := startReplica(t, "", "")
	m := testMountWith(t, MountOptions{Volume: "unplanned", Args: r.MountArgs("--interval", "continuous"),
		Prepare: func(src string) { prepareTree(t, src) }})
	aux := scratchDir(t, "drfs-e2e-fioaux-")

	img := filepath.Join(m.Mnt, "images/vm.qcow2")
	mustRun(t, time.Minute, "qemu-img", "create", "-q", "-f", "qcow2", img, "64M")
	qemuIO(t, img, "none", "write -P 0x5a 0 2M", "write -P 0xa5 40M 1M", "aio_flush")
	qemuIO(t, img, "writeback", "write -P 0x44 20M 1M", "flush")
	makeExt4Image(t, filepath.Join(m.Mnt, "images/ext4.img"), "32M", "bufio", "strings")
	runFio(t, fioFailoverArgs(filepath.Join(m.Mnt, "fio.dat"), aux, "--verify_state_save=1"))
	if ls, _ := filepath.Glob(filepath.Join(aux, "*verify.state")); len(ls) == 0 {
		t.Fatalf("fio saved no verify state in %s", aux)
	}

	acked := m.Sync(2 * time.Minute)
	requireTreesEqual(t, m.Src, r.DataDir(m.Volume))
	ackedTree := snapshotTree(t, m.Src, "acked")

	// Writes the replica never acknowledges: the replica is stopped first.
	r.Stop()
	qemuIO(t, img, "none", "write -P 0x77 0 1M", "aio_flush")
	writeAt(t, filepath.Join(m.Mnt, "fio.dat"), randBytes(90, 256<<10), 1<<20)
	mustWriteFile(t, filepath.Join(m.Mnt, "unacked.bin"), randBytes(91, 300<<10), 0o644)
	if err := os.Remove(filepath.Join(m.Mnt, "file1")); err != nil {
		t.Fatal(err)
	}
	if st, ok := m.statusQuiet(); ok {
		t.Logf("primary status before the kill: %s", st.raw)
		if st.AckedSeq != acked {
			t.Errorf("acked_seq %d with the replica stopped, want %d", st.AckedSeq, acked)
		}
	}
	m.Kill()

	// The replica site: the primary is lost; serve is stopped, so promote
	// works on the directory. It was in contact moments ago: --force.
	pr := drfsPromote(t, r.Dir, m.Volume, "--force")
	if pr.Generation != 2 || pr.Seq != acked {
		t.Errorf("promoted to generation %d at seq %d, want generation 2 at the acknowledged seq %d", pr.Generation, pr.Seq, acked)
	}
	data := r.DataDir(m.Volume)
	requireSameTree(t, ackedTree, data)
	out := runFio(t, fioFailoverArgs(filepath.Join(data, "fio.dat"), aux, "--verify_only", "--verify_state_load=1"))
	if !regexp.MustCompile(`READ:.*io=16\.0MiB`).MatchString(out) {
		t.Errorf("fio --verify_only on the promoted data did not verify 16 MiB:\n%s", out)
	}
	qemuImgCheck(t, filepath.Join(data, "images/vm.qcow2"))
	mustRun(t, 2*time.Minute, "qemu-img", "compare", "-f", "qcow2", "-F", "qcow2",
		filepath.Join(ackedTree, "images/vm.qcow2"), filepath.Join(data, "images/vm.qcow2"))
	mustRun(t, 2*time.Minute, "e2fsck", "-fn", filepath.Join(data, "images/ext4.img"))
	if _, err := os.Lstat(filepath.Join(data, "unacked.bin")); err == nil {
		t.Errorf("an unacknowledged file is on the promoted replica")
	}
	if rs, ok := replicaStatus(t, r.Dir, m.Volume); !ok || rs.Generation != 2 {
		t.Errorf("replica status after promote: %+v (listed %v), want generation 2", rs, ok)
	}

	// Bring it up as the primary of generation 2 and write through it.
	m2 := mountPromoted(t, r.Dir, m.Volume)
	st := m2.Status()
	t.Logf("promoted primary status: %s", st.raw)
	if st.Generation != 2 {
		t.Errorf("promoted primary: generation %d, want 2", st.Generation)
	}
	payload := randBytes(92, 1<<20+3)
	mustWriteFile(t, filepath.Join(m2.Mnt, "after-failover.bin"), payload, 0o644)
	qemuIO(t, filepath.Join(m2.Mnt, "images/vm.qcow2"), "none", "write -P 0x31 8M 1M", "aio_flush")
	qemuIO(t, filepath.Join(m2.Mnt, "images/vm.qcow2"), "none", "read -P 0x31 8M 1M", "read -P 0x5a 1M 1M")
	if got, err := os.ReadFile(filepath.Join(m2.Mnt, "after-failover.bin")); err != nil || !bytes.Equal(got, payload) {
		t.Errorf("read back through the promoted mount: %v (equal %v)", err, bytes.Equal(got, payload))
	}
	st = m2.Status()
	if *st.JournalSeq <= acked {
		t.Errorf("promoted primary journal_seq %d after writes, want seqs continuing after the point %d", *st.JournalSeq, acked)
	}
	m2.Stop()
	qemuImgCheck(t, filepath.Join(data, "images/vm.qcow2"))

	for _, src := range [][]string{{"--dir", r.Dir, "--volume", m.Volume}, {"--state", m2.State}} {
		es := drfsAudit(t, src...)
		e, ok := findAudit(es, "promote")
		if !ok {
			t.Errorf("drfs audit %v: no promote entry: %+v", src, es)
			continue
		}
		if !e.Forced || e.GenBefore != 1 || e.GenAfter != 2 || e.Point != acked || e.Volume != m.Volume || e.Host == "" || e.User == "" || e.Time.IsZero() {
			t.Errorf("drfs audit %v: promote entry %+v, want forced, generation 1 -> 2, point %d, host/user/time set", src, e, acked)
		}
	}
}

// TestFailover_PromoteOlderPoint replicates four write phases, one log each,
// and promotes the point after phase 2: the replica data must equal the
// source as it was after phase 2.
func TestFailover_PromoteOlderPoint(t *testing.T) {
	requireTools(t, "cp")
	r := startReplica(t, "", "")
	m := testMountWith(t, MountOptions{Volume: "older", Args: r.MountArgs("--interval", "1h")})
	mnt := m.Mnt
	p := func(s string) string { return filepath.Join(mnt, s) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	phases := []func(){
		func() {
			mustWriteFile(t, p("disk.raw"), randBytes(100, 4<<20), 0o644)
			mustWriteFile(t, p("conf/a.xml"), []byte("<a>phase1</a>\n"), 0o644)
			mustWriteFile(t, p("gone-in-3"), randBytes(101, 50000), 0o644)
		},
		func() {
			writeAt(t, p("disk.raw"), randBytes(102, 256<<10), 1<<20)
			mustWriteFile(t, p("conf/b.xml"), []byte("<b>phase2</b>\n"), 0o600)
			must(os.Truncate(p("gone-in-3"), 20000))
			must(os.Symlink("conf/a.xml", p("link")))
		},
		func() {
			writeAt(t, p("disk.raw"), randBytes(103, 512<<10), 0)
			must(os.Remove(p("gone-in-3")))
			must(os.Rename(p("conf"), p("conf2")))
			must(os.Truncate(p("disk.raw"), 6<<20))
		},
		func() {
			writeAt(t, p("disk.raw"), randBytes(104, 128<<10), 1<<20+4096)
			mustWriteFile(t, p("conf2/c.xml"), []byte("<c>phase4</c>\n"), 0o644)
			must(os.Chmod(p("conf2/a.xml"), 0o600))
		},
	}
	var seqs []uint64
	var snaps []string
	for i, ph := range phases {
		ph()
		seqs = append(seqs, m.Sync(time.Minute))
		snaps = append(snaps, snapshotTree(t, m.Src, fmt.Sprintf("phase%d", i+1)))
	}
	t.Logf("acknowledged seqs after each phase: %v", seqs)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("acked seq did not advance in phase %d: %v", i+1, seqs)
		}
	}
	if st := m.Status(); st.AckedSeq != seqs[3] {
		t.Errorf("status acked_seq %d, last drfs sync said %d", st.AckedSeq, seqs[3])
	}
	ps := replicaPoints(t, r.Dir, m.Volume)
	has := false
	for _, pt := range ps {
		has = has || pt.Seq == seqs[1]
	}
	if !has {
		t.Fatalf("drfs points does not list the phase-2 seq %d: %+v", seqs[1], ps)
	}

	m.Stop()
	r.Stop()
	point := strconv.FormatUint(seqs[1], 10)
	// The primary was in contact moments ago: without --force it is refused.
	out, err := drfsCmd(t, time.Minute, "promote", "--dir", r.Dir, "--volume", m.Volume, "--point", point)
	if err == nil {
		t.Errorf("drfs promote without --force right after the primary's last contact succeeded:\n%s", out)
	} else if !strings.Contains(out, "in contact") {
		t.Errorf("drfs promote without --force: refusal does not say the primary was in contact:\n%s", out)
	}
	if err == nil {
		t.FailNow()
	}
	pr := drfsPromote(t, r.Dir, m.Volume, "--point", point, "--force")
	if pr.Seq != seqs[1] || pr.Generation != 2 || pr.RolledBack != 2 {
		t.Errorf("promote --point %d: generation %d seq %d rolled back %d; want generation 2, seq %d, 2 logs rolled back", seqs[1], pr.Generation, pr.Seq, pr.RolledBack, seqs[1])
	}
	requireSameTree(t, snaps[1], r.DataDir(m.Volume))
}

// TestFailover_Planned switches the primary role with `drfs failover
// --planned` while a writer runs: every write that returned before the
// switch is on the promoted replica, the old side is demoted and refuses to
// mount again.
func TestFailover_Planned(t *testing.T) {
	requireTools(t)
	requireBuilt(t, crashWriter, "e2e/internal/crashwriter")
	r := startReplica(t, "", "")
	m := testMountWith(t, MountOptions{Volume: "planned", Args: r.MountArgs("--interval", "continuous")})
	const nblocks = 4096 // 16 MiB
	disk := filepath.Join(m.Mnt, "disk.img")
	makeBlockFile(t, disk, nblocks)
	m.Sync(time.Minute)

	logPath := filepath.Join(m.Logs, "writes.log")
	w := startCrashWriter(t, disk, logPath, nblocks, "30s")
	time.Sleep(3 * time.Second)
	select {
	case <-w.done:
		t.Fatalf("writer ended before the failover: %s", w.out.String())
	default:
	}
	pause, _ := drfsPlannedFailover(t, m)
	t.Logf("reported guest pause: %v", pause)
	if pause <= 0 || pause > 60*time.Second {
		t.Errorf("reported pause %v is not plausible", pause)
	}
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("writer still running 20s after the planned failover: writes do not fail on the demoted side")
	}
	t.Logf("writer: %s", strings.TrimSpace(w.out.String()))
	if !strings.Contains(w.out.String(), "read-only file system") {
		t.Errorf("writer did not stop with EROFS after the switch: %s", w.out.String())
	}
	last, n := parseWriterLog(t, logPath)
	if n < 100 {
		t.Fatalf("only %d writes completed before the switch; the test proves nothing", n)
	}
	t.Logf("%d completed writes to %d blocks before the switch", n, len(last))

	data := r.DataDir(m.Volume)
	checkWriterBlocks(t, "promoted replica", filepath.Join(data, "disk.img"), nblocks, last)
	// Zero loss: the replica equals the (now read-only) old source exactly.
	requireTreesEqual(t, m.Src, data)

	st := m.Status()
	t.Logf("old primary status: %s", st.raw)
	if st.ReplicationState != "demoted" {
		t.Errorf("old primary replication_state %q, want demoted", st.ReplicationState)
	}
	err := os.WriteFile(filepath.Join(m.Mnt, "after-switch"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("write on the demoted mount: %v, want EROFS", err)
	}
	if rs, ok := replicaStatus(t, r.Dir, m.Volume); !ok || rs.Generation != 2 {
		t.Errorf("replica after the planned failover: %+v (listed %v), want generation 2", rs, ok)
	}
	if es := drfsAudit(t, "--state", m.State); len(es) == 0 {
		t.Errorf("drfs audit --state %s: no entries after a planned failover", m.State)
	} else if e, ok := findAudit(es, "failover"); !ok || e.GenAfter != 2 || e.Forced {
		t.Errorf("drfs audit on the old primary: %+v, want a failover to generation 2, not forced", es)
	}

	m.Stop()
	err = m.TryRemount()
	if err == nil {
		t.Errorf("a demoted state mounted again as a primary")
		m.Stop()
	} else if !strings.Contains(err.Error(), "demoted") || !strings.Contains(err.Error(), "reverse") {
		t.Errorf("mounting the demoted state failed without naming demotion and drfs reverse: %v", err)
	}

	// The new primary comes up at generation 2 with the same data.
	m2 := mountPromoted(t, r.Dir, m.Volume)
	if st := m2.Status(); st.Generation != 2 {
		t.Errorf("new primary generation %d, want 2", st.Generation)
	}
	checkWriterBlocks(t, "new primary mount", filepath.Join(m2.Mnt, "disk.img"), nblocks, last)
}

// TestFailover_Reverse: unplanned failover after which both sides wrote;
// reverse the old side into a replica of the new primary (only diverged
// extents travel), then fail back with a planned failover and reverse.
func TestFailover_Reverse(t *testing.T) {
	requireTools(t)
	const vol = "rev"
	rB := startReplica(t, "", "")
	mA := testMountWith(t, MountOptions{Volume: vol, Args: rB.MountArgs("--interval", "continuous"),
		Prepare: func(src string) {
			mustWriteFile(t, filepath.Join(src, "disk.raw"), randBytes(200, 16<<20), 0o644)
			mustWriteFile(t, filepath.Join(src, "conf/vm.xml"), []byte("<vm/>\n"), 0o644)
			mustWriteFile(t, filepath.Join(src, "other.raw"), randBytes(201, 4<<20), 0o644)
		}})
	mustWriteFile(t, filepath.Join(mA.Mnt, "both.raw"), randBytes(202, 2<<20), 0o644)
	common := mA.Sync(2 * time.Minute)

	// Site A writes after the common point with its replica away, then dies.
	rB.Stop()
	var divA int64
	for i, off := range []int64{1 << 20, 5 << 20, 9<<20 + 4096} {
		writeAt(t, filepath.Join(mA.Mnt, "disk.raw"), randBytes(uint64(210+i), 64<<10), off)
		divA += 64 << 10
	}
	mustWriteFile(t, filepath.Join(mA.Mnt, "a-only.bin"), randBytes(215, 100<<10), 0o644)
	divA += 100 << 10
	mA.Kill()

	pr := drfsPromote(t, rB.Dir, vol, "--force")
	if pr.Seq != common {
		t.Errorf("promoted at seq %d, want the common point %d", pr.Seq, common)
	}
	metricsB := freeAddr(t)
	mB := mountPromoted(t, rB.Dir, vol, "--metrics", metricsB)
	var divB int64
	for i, off := range []int64{1<<20 + 32<<10, 12 << 20} { // the first overlaps one of A's
		writeAt(t, filepath.Join(mB.Mnt, "disk.raw"), randBytes(uint64(220+i), 64<<10), off)
		divB += 64 << 10
	}
	writeAt(t, filepath.Join(mB.Mnt, "other.raw"), randBytes(222, 8<<10), 3<<20)
	divB += 8 << 10
	mustWriteFile(t, filepath.Join(mB.Mnt, "b-only.bin"), randBytes(223, 200<<10), 0o644)
	divB += 200 << 10

	// Site A becomes the new primary's replica.
	siteA := scratchDir(t, "drfs-e2e-siteA-")
	repA := filepath.Join(siteA, "rep")
	out := drfsReverse(t, mA.State, repA)
	if !strings.Contains(out, "never reached the replica") {
		t.Errorf("drfs reverse does not report the unshipped records of the old primary:\n%s", out)
	}
	if ls := divergedLogs(repA, vol); len(ls) == 0 {
		t.Errorf("drfs reverse saved no diverged change log under %s", filepath.Join(repA, vol, "state", "diverged"))
	} else if fi, err := os.Stat(ls[0]); err != nil || fi.Size() == 0 {
		t.Errorf("diverged change log %s: %v (empty?)", ls[0], err)
	}
	if _, err := os.Stat(mA.Src); !os.IsNotExist(err) {
		t.Errorf("the old source %s is still there after reverse (want it moved to %s): %v", mA.Src, filepath.Join(repA, vol, "data"), err)
	}
	rA := startReplica(t, repA, "")
	mB.Stop()
	mB.Args = rA.MountArgs("--interval", "continuous", "--metrics", metricsB)
	mB.Remount()
	mB.Sync(2 * time.Minute)
	requireTreesEqual(t, mB.Src, rA.DataDir(vol))
	wire := wireBytes(t, metricsB)
	limit := 1.1*float64(divA+divB) + 64<<10
	t.Logf("reverse: diverged %d bytes (A %d, B %d), %v bytes on the wire, limit %v", divA+divB, divA, divB, wire, limit)
	if wire > limit {
		t.Errorf("reverse catch-up sent %v bytes, want <= %v (1.1 x %d diverged bytes + 64 KiB): not delta-only", wire, limit, divA+divB)
	}
	if wire == 0 {
		t.Errorf("reverse catch-up sent nothing although both sides diverged")
	}
	if st := mB.Status(); st.Generation != 2 || st.ReplicationState != "replicating" {
		t.Errorf("new primary after the catch-up: generation %d state %q, want 2 replicating", st.Generation, st.ReplicationState)
	}

	// Failback: planned failover to site A, reverse site B, mount A as the primary.
	drfsPlannedFailover(t, mB)
	mB.Stop()
	rA.Stop()
	siteB := scratchDir(t, "drfs-e2e-siteB-")
	repB := filepath.Join(siteB, "rep")
	drfsReverse(t, mB.State, repB)
	if ls := divergedLogs(repB, vol); len(ls) != 0 {
		t.Errorf("a planned failover left unshipped records on the demoted side: %v", ls)
	}
	rB2 := startReplica(t, repB, "")
	metricsA := freeAddr(t)
	mA2 := mountPromoted(t, repA, vol, append(rB2.MountArgs("--interval", "continuous"), "--metrics", metricsA)...)
	var divBack int64
	writeAt(t, filepath.Join(mA2.Mnt, "disk.raw"), randBytes(230, 128<<10), 7<<20)
	mustWriteFile(t, filepath.Join(mA2.Mnt, "after-failback.bin"), randBytes(231, 128<<10), 0o644)
	divBack += 256 << 10
	mA2.Sync(2 * time.Minute)
	requireTreesEqual(t, mA2.Src, rB2.DataDir(vol))
	wire = wireBytes(t, metricsA)
	limit = 1.1*float64(divBack) + 64<<10
	t.Logf("failback: %d bytes written after it, %v bytes on the wire, limit %v", divBack, wire, limit)
	if wire > limit {
		t.Errorf("failback sent %v bytes, want <= %v (1.1 x %d written + 64 KiB): not delta-only", wire, limit, divBack)
	}
	if st := mA2.Status(); st.Generation != 3 {
		t.Errorf("site A after failback: generation %d, want 3", st.Generation)
	}
	es := drfsAudit(t, "--state", mA2.State)
	t.Logf("audit of the failed-back primary: %+v", es)
	if _, ok := findAudit(es, "failover"); !ok {
		t.Errorf("drfs audit --state %s: no failover entry", mA2.State)
	}
}

// TestFailover_FencingAndSplitBrain promotes the replica with --force while
// the old primary keeps running: the old primary is fenced but keeps serving
// its guests; both sides write; reverse saves the old side's split-brain
// records and nothing of them reaches the new primary.
func TestFailover_FencingAndSplitBrain(t *testing.T) {
	requireTools(t)
	const vol = "split"
	rB := startReplica(t, "", "")
	mA := testMountWith(t, MountOptions{Volume: vol, Args: rB.MountArgs("--interval", "continuous"),
		Prepare: func(src string) {
			mustWriteFile(t, filepath.Join(src, "disk.raw"), randBytes(300, 4<<20), 0o644)
		}})
	writeAt(t, filepath.Join(mA.Mnt, "disk.raw"), randBytes(301, 64<<10), 0)
	common := mA.Sync(time.Minute)

	host, _ := os.Hostname()
	pr := drfsPromote(t, rB.Dir, vol, "--force") // through the running serve
	if pr.Generation != 2 || pr.Seq != common {
		t.Errorf("forced promote: generation %d seq %d, want 2 at %d", pr.Generation, pr.Seq, common)
	}

	// The old primary keeps writing; its next log is refused.
	mustWriteFile(t, filepath.Join(mA.Mnt, "a-after-split.bin"), randBytes(302, 64<<10), 0o644)
	var st Status
	if !waitFor(30*time.Second, func() bool {
		var ok bool
		st, ok = mA.statusQuiet()
		return ok && st.ReplicationState == "fenced"
	}) {
		t.Fatalf("old primary not fenced 30s after the forced promotion: %s", st.raw)
	}
	t.Logf("fenced old primary: %s", st.raw)
	for _, want := range []string{"promoted (forced) to generation 2", "on " + host, fmt.Sprintf("from seq %d", common)} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("fenced last_error %q does not contain %q", st.LastError, want)
		}
	}
	if !regexp.MustCompile(` at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`).MatchString(st.LastError) {
		t.Errorf("fenced last_error %q does not give the time of the promotion", st.LastError)
	}
	// ... and still serves its guests read-write, journaling.
	seq0 := *st.JournalSeq
	aPayload := randBytes(303, 128<<10)
	mustWriteFile(t, filepath.Join(mA.Mnt, "a-fenced.bin"), aPayload, 0o644)
	writeAt(t, filepath.Join(mA.Mnt, "disk.raw"), randBytes(304, 64<<10), 2<<20)
	if got, err := os.ReadFile(filepath.Join(mA.Mnt, "a-fenced.bin")); err != nil || !bytes.Equal(got, aPayload) {
		t.Errorf("fenced old primary: read back %v (equal %v)", err, bytes.Equal(got, aPayload))
	}
	if st2 := mA.Status(); *st2.JournalSeq <= seq0 || st2.ReplicationState != "fenced" {
		t.Errorf("fenced old primary after more writes: journal_seq %d (was %d), state %q", *st2.JournalSeq, seq0, st2.ReplicationState)
	}
	out, err := drfsCmd(t, 30*time.Second, "sync", "--state", mA.State, "--timeout", "5s")
	if err == nil {
		t.Errorf("drfs sync on a fenced primary succeeded:\n%s", out)
	}

	// The new primary writes too: split brain.
	mB := mountPromoted(t, rB.Dir, vol)
	mustWriteFile(t, filepath.Join(mB.Mnt, "b-after-split.bin"), randBytes(305, 64<<10), 0o644)
	writeAt(t, filepath.Join(mB.Mnt, "disk.raw"), randBytes(306, 64<<10), 2<<20)
	for _, f := range []string{"a-after-split.bin", "a-fenced.bin"} {
		if _, err := os.Lstat(filepath.Join(mB.Mnt, f)); err == nil {
			t.Errorf("the fenced old primary's %s reached the new primary", f)
		}
	}

	mA.Stop()
	siteA := scratchDir(t, "drfs-e2e-siteA-")
	repA := filepath.Join(siteA, "rep")
	out = drfsReverse(t, mA.State, repA)
	if !strings.Contains(out, "split brain") || !regexp.MustCompile(`had \d+ records after seq `+strconv.FormatUint(common, 10)).MatchString(out) {
		t.Errorf("drfs reverse does not report the unshipped (split-brain) records after seq %d:\n%s", common, out)
	}
	ls := divergedLogs(repA, vol)
	if len(ls) == 0 {
		t.Fatalf("drfs reverse saved no diverged change log")
	}
	if !strings.Contains(out, ls[0]) {
		t.Errorf("drfs reverse output does not name the saved log %s", ls[0])
	}
	if es := drfsAudit(t, "--state", mA.State); len(es) == 0 {
		t.Errorf("no audit entry on the old primary after reverse")
	} else if _, ok := findAudit(es, "reverse"); !ok {
		t.Errorf("drfs audit on the old primary: no reverse entry: %+v", es)
	}

	// The old side converges to the new primary; its post-split writes are
	// gone from the tree (kept only in the saved log).
	rA := startReplica(t, repA, "")
	mB.Stop()
	mB.Args = rA.MountArgs("--interval", "continuous")
	mB.Remount()
	mB.Sync(time.Minute)
	requireTreesEqual(t, mB.Src, rA.DataDir(vol))
	for _, f := range []string{"a-after-split.bin", "a-fenced.bin"} {
		if _, err := os.Lstat(filepath.Join(mB.Mnt, f)); err == nil {
			t.Errorf("%s of the fenced side was merged into the new primary", f)
		}
	}
	if _, err := os.Lstat(filepath.Join(mB.Mnt, "b-after-split.bin")); err != nil {
		t.Errorf("the new primary lost its own write: %v", err)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// verifyReport is `drfs verify --json`.
type verifyReport struct {
	Seq         uint64 `json:"seq"`
	Files       int64  `json:"files"`
	Bytes       int64  `json:"bytes"`
	Differences []struct {
		Path string `json:"path"`
		Off  int64  `json:"off"`
		Len  int64  `json:"len"`
		What string `json:"what"`
	} `json:"differences"`
}

// drfsVerify runs `drfs verify --json` and returns the report, the exit
// status and the output.
func drfsVerify(t *testing.T, m *Mount) (verifyReport, int, string) {
	t.Helper()
	out, err := drfsCmd(t, 2*time.Minute, "verify", "--state", m.State, "--json")
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("drfs verify: %v\n%s", err, out)
	}
	var rep verifyReport
	i := strings.Index(out, "{")
	if i < 0 || json.NewDecoder(strings.NewReader(out[i:])).Decode(&rep) != nil {
		t.Fatalf("drfs verify --json (exit %d) printed no JSON report {seq, files, bytes, differences}:\n%s", code, out)
	}
	return rep, code, out
}

// TestFailover_VerifyFindsFlip: `drfs verify` finds a byte flipped directly
// in the replica's data.
func TestFailover_VerifyFindsFlip(t *testing.T) {
	requireTools(t)
	r := startReplica(t, "", "")
	m := testMountWith(t, MountOptions{Volume: "verify", Args: r.MountArgs("--interval", "continuous"),
		Prepare: func(src string) { prepareTree(t, src) }})
	mustWriteFile(t, filepath.Join(m.Mnt, "disk.raw"), randBytes(400, 2<<20), 0o644)
	acked := m.Sync(time.Minute)

	rep, code, out := drfsVerify(t, m)
	if code != 0 || len(rep.Differences) != 0 {
		t.Fatalf("drfs verify on an identical replica: exit %d, differences %+v:\n%s", code, rep.Differences, out)
	}
	if rep.Seq < acked || rep.Files == 0 || rep.Bytes < 2<<20 {
		t.Errorf("drfs verify report %+v: want seq >= %d, files > 0, bytes >= 2 MiB", rep, acked)
	}

	const flipOff = 1<<20 + 12345
	p := filepath.Join(r.DataDir(m.Volume), "disk.raw")
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, flipOff); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, flipOff); err != nil {
		t.Fatal(err)
	}
	f.Close()

	rep, code, out = drfsVerify(t, m)
	if code == 0 {
		t.Errorf("drfs verify exit 0 with a flipped byte on the replica:\n%s", out)
	}
	found := false
	for _, d := range rep.Differences {
		if d.Path == "disk.raw" && d.Off <= flipOff && flipOff < d.Off+d.Len {
			found = true
		} else {
			t.Errorf("drfs verify names a difference that is not there: %+v", d)
		}
	}
	if !found {
		t.Errorf("drfs verify does not name disk.raw with an extent covering byte %d: %+v\n%s", flipOff, rep.Differences, out)
	}
}

// TestFailover_SeedExportImport seeds a new replica from an exported copy:
// the primary then sends only what changed after the export.
func TestFailover_SeedExportImport(t *testing.T) {
	requireTools(t)
	const vol = "seed"
	const size = 128 << 20
	metrics := freeAddr(t)
	m := testMountWith(t, MountOptions{Volume: vol, Args: []string{"--metrics", metrics},
		Prepare: func(src string) {
			mustWriteFile(t, filepath.Join(src, "disk.raw"), randBytes(500, size), 0o644)
			mustWriteFile(t, filepath.Join(src, "conf/vm.xml"), []byte("<vm/>\n"), 0o644)
		}})
	// Written through the mount before the export: the seed holds it.
	writeAt(t, filepath.Join(m.Mnt, "disk.raw"), randBytes(505, 64<<10), 100<<20)
	mustWriteFile(t, filepath.Join(m.Mnt, "conf/before-export.xml"), []byte("<x/>\n"), 0o644)
	seed := filepath.Join(scratchDir(t, "drfs-e2e-seed-"), "seed")
	out, err := drfsCmd(t, 3*time.Minute, "seed", "export", "--state", m.State, seed)
	if err != nil {
		t.Fatalf("drfs seed export: %v\n%s", err, out)
	}
	t.Logf("drfs seed export:\n%s", out)
	// The manifest names the volume and hashes every file's blocks; the
	// copy holds the image (under data/ or V/data/).
	var man struct {
		Volume string `json:"volume"`
		Seq    uint64 `json:"seq"`
		Files  []struct {
			Path   string   `json:"path"`
			Size   int64    `json:"size"`
			Hashes []uint64 `json:"hashes"`
		} `json:"files"`
	}
	if b, err := os.ReadFile(filepath.Join(seed, "manifest.json")); err != nil {
		t.Errorf("seed export wrote no manifest.json: %v", err)
	} else if err := json.Unmarshal(b, &man); err != nil {
		t.Errorf("seed manifest.json: %v", err)
	} else {
		hashed := false
		for _, f := range man.Files {
			hashed = hashed || (f.Path == "disk.raw" && f.Size == size && len(f.Hashes) > 0)
		}
		if man.Volume != vol || !hashed {
			t.Errorf("seed manifest: volume %q, disk.raw hashed %v; want volume %q and block hashes of disk.raw", man.Volume, hashed, vol)
		}
	}
	if a, b := filepath.Join(seed, "data", "disk.raw"), filepath.Join(seed, vol, "data", "disk.raw"); !fileExists(a) && !fileExists(b) {
		t.Errorf("seed export: the image is neither at %s nor at %s", a, b)
	}
	repDir := filepath.Join(scratchDir(t, "drfs-e2e-seeded-"), "rep")
	// The volume name comes from the manifest (the implemented CLI has no --volume).
	out, err = drfsCmd(t, 3*time.Minute, "seed", "import", "--dir", repDir, seed)
	if err != nil {
		t.Fatalf("drfs seed import: %v\n%s", err, out)
	}
	t.Logf("drfs seed import:\n%s", out)
	if rs, ok := replicaStatus(t, repDir, vol); !ok || rs.AppliedSeq != man.Seq {
		t.Errorf("seeded replica: %+v (listed %v), want volume %s at the seed's seq %d", rs, ok, vol, man.Seq)
	}

	// 1 MiB more on the primary after the export.
	for i := 0; i < 4; i++ {
		writeAt(t, filepath.Join(m.Mnt, "disk.raw"), randBytes(uint64(510+i), 256<<10), int64(i)*(30<<20)+4096)
	}
	r := startReplica(t, repDir, "")
	m.Stop()
	m.Args = r.MountArgs("--interval", "continuous", "--metrics", metrics)
	m.Remount()
	m.Sync(3 * time.Minute)
	requireTreesEqual(t, m.Src, r.DataDir(vol))
	wire := wireBytes(t, metrics)
	t.Logf("seeded replica: %v bytes on the wire for a %d MiB volume", wire, size>>20)
	if wire >= 8<<20 {
		t.Errorf("replicating to a seeded replica sent %v bytes, want < 8 MiB (only what changed after the export)", wire)
	}
}
