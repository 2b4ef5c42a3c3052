package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"drfs/e2e/internal/blockfmt"
	"drfs/internal/faultproxy"
)

// The fault campaign: a primary (source on one LazyFS disk, journal and metadata on another)
// replicating continuously through the fault proxy to a replica whose directory is on a third
// LazyFS disk, a guest writing O_DIRECT blocks through the mount, and one fault per round drawn
// at random. After each round the primary's file is checked against a model of every
// acknowledged and every fsynced write, the replica is checked to be at a log boundary, and at
// the end `drfs verify` must be clean.
//
// Full disks are not among the faults here: LazyFS acknowledges an fsync even when writing its
// cache back to the disk below fails, so a full disk under LazyFS turns into silent loss that no
// real filesystem causes (drfs never even sees ENOSPC). TestFault_FullDisk fills real ext4
// filesystems under the journal and the source instead; make torture runs it too.
//
// make test runs 3 rounds. make torture runs DRFS_TORTURE_DURATION (default 5m) or
// DRFS_TORTURE_ROUNDS rounds; DRFS_TORTURE_SEED replays a campaign; DRFS_TORTURE_FAULTS
// restricts it to some kinds.

// Fault kinds.
const (
	faultKillPrimary  = "kill -9 primary"
	faultKillReplica  = "kill -9 replica"
	faultPowerSource  = "power loss: primary source"
	faultPowerJournal = "power loss: primary journal"
	faultPowerPrimary = "power loss: primary source+journal"
	faultPowerReplica = "power loss: replica"
	faultNetwork      = "network faults"
)

var faultKinds = []string{faultKillPrimary, faultKillReplica, faultPowerSource, faultPowerJournal,
	faultPowerPrimary, faultPowerReplica, faultNetwork}

type campaign struct {
	t       *testing.T
	rng     *rand.Rand
	src     *LazyFS // primary source disk
	jrn     *LazyFS // primary journal + metadata disk
	rep     *LazyFS // replica disk
	r       *Replica
	px      *faultproxy.Proxy
	m       *Mount
	disk    string // the guest's file, through the mount
	nblocks int

	acked   map[int64]uint64 // offset -> newest generation acknowledged to the guest
	synced  map[int64]uint64 // offset -> newest generation fsynced by the guest
	nextGen uint64

	// Figures.
	rounds                int
	faults                map[string]int
	ackChecked, syncCheck int // writes checked
	bytesLost             int64
	losses                []string
	refused               int    // guest writes refused (an error, not acknowledged)
	diverged              string // the round where the replica stopped matching the primary
}

// tortureRounds reads the campaign's length from the environment; short is the default
// 3-round campaign of make test.
func tortureRounds(t *testing.T) (rounds int, until time.Time, short bool) {
	if s := os.Getenv("DRFS_TORTURE_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("DRFS_TORTURE_ROUNDS=%q: want a positive number", s)
		}
		return n, time.Time{}, false
	}
	if s := os.Getenv("DRFS_TORTURE_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("DRFS_TORTURE_DURATION=%q: want a duration", s)
		}
		return 1 << 30, time.Now().Add(d), false
	}
	return 3, time.Time{}, true
}

// TestTorture runs the fault campaign (3 rounds unless DRFS_TORTURE_ROUNDS or
// DRFS_TORTURE_DURATION says otherwise).
func TestTorture(t *testing.T) {
	requireTools(t)
	requireBuilt(t, crashWriter, "e2e/internal/crashwriter")
	requireBuilt(t, drfsBin, "drfs (cmd/drfs)")
	rounds, until, short := tortureRounds(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DRFS_TORTURE_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("DRFS_TORTURE_SEED=%q: %v", s, err)
		}
	}
	t.Logf("torture: seed %d (DRFS_TORTURE_SEED=%d replays the fault sequence)", seed, seed)
	c := &campaign{t: t, rng: rand.New(rand.NewPCG(seed, 7)), faults: map[string]int{},
		acked: map[int64]uint64{}, synced: map[int64]uint64{}, nextGen: 1, nblocks: 4096}
	c.setup()
	// The short campaign in make test covers one fault of each family.
	shortKinds := []string{faultKillPrimary, faultPowerSource, faultKillReplica}
	kinds := faultKinds
	if s := os.Getenv("DRFS_TORTURE_FAULTS"); s != "" {
		// A comma-separated subset of the kinds, to hammer one (e.g. "power loss: primary journal").
		kinds = nil
		for _, k := range strings.Split(s, ",") {
			if !slices.Contains(faultKinds, strings.TrimSpace(k)) {
				t.Fatalf("DRFS_TORTURE_FAULTS: unknown fault %q (known: %s)", k, strings.Join(faultKinds, ", "))
			}
			kinds = append(kinds, strings.TrimSpace(k))
		}
	}
	var order []string // each kind once per cycle, in random order
	for i := 0; i < rounds && (until.IsZero() || time.Now().Before(until)); i++ {
		if len(order) == 0 {
			order = append(order, kinds...)
			c.rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		}
		kind := order[0]
		order = order[1:]
		if short {
			kind = shortKinds[i]
		}
		c.round(kind)
		if t.Failed() && len(c.losses) == 0 {
			break // a harness or invariant failure other than lost data: stop here
		}
	}
	c.finish()
}

func (c *campaign) setup() {
	t := c.t
	c.src = startLazyFS(t, "src")
	c.jrn = startLazyFS(t, "journal")
	c.rep = startLazyFS(t, "replica")
	c.r = startReplica(t, filepath.Join(c.rep.Mnt, "replica"), "")
	c.px = startProxy(t, c.r.Addr, faultproxy.Faults{})
	// The state directory itself stays on the scratch disk for its lock file and control
	// socket (LazyFS cannot bind unix sockets); the journal and the metadata live on the
	// journal disk.
	stateRoot := scratchDir(t, "drfs-e2e-torture-state-")
	state := filepath.Join(stateRoot, "state")
	for _, d := range []string{state, filepath.Join(c.jrn.Mnt, "journal"), filepath.Join(c.jrn.Mnt, "meta")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"journal", "meta"} {
		if err := os.Symlink(filepath.Join(c.jrn.Mnt, d), filepath.Join(state, d)); err != nil {
			t.Fatal(err)
		}
	}
	c.m = testMountWith(t, MountOptions{
		Src:   filepath.Join(c.src.Mnt, "src"),
		State: state,
		Args: []string{"--replica", "http://" + c.px.Addr(), "--insecure", "--interval", "continuous",
			"--checkpoint-interval", "2s", "--segment-size", "8M"},
	})
	c.disk = filepath.Join(c.m.Mnt, "disk.img")
	makeBlockFile(t, c.disk, c.nblocks)
	c.baseline()
}

// round runs the guest writer for a few seconds with one fault injected partway.
func (c *campaign) round(kind string) {
	t := c.t
	c.rounds++
	c.faults[kind]++
	n := c.rounds
	logPath := filepath.Join(c.m.Logs, fmt.Sprintf("writes.%d.log", n))
	syncLog := filepath.Join(c.m.Logs, fmt.Sprintf("fsynced.%d.log", n))
	dur := time.Duration(3000+c.rng.IntN(2000)) * time.Millisecond
	w := startCrashWriter(t, c.disk, logPath, c.nblocks, dur.String(),
		"-synclog", syncLog, "-firstgen", strconv.FormatUint(c.nextGen, 10))
	at := time.Duration(500+c.rng.IntN(int(dur/time.Millisecond)-1000)) * time.Millisecond
	select {
	case <-w.done:
	case <-time.After(at):
	}
	primaryDown, powerLoss := false, false
	var undo func()
	switch kind {
	case faultKillPrimary:
		c.m.Kill()
		primaryDown = true
	case faultPowerSource, faultPowerJournal, faultPowerPrimary:
		c.m.Kill()
		primaryDown, powerLoss = true, true
	case faultKillReplica:
		c.r.Kill()
		c.px.SetFaults(faultproxy.Faults{RefuseProb: 1})
		c.checkReplicaBoundary(n, kind)
		undo = func() { c.px.SetFaults(faultproxy.Faults{}) }
	case faultPowerReplica:
		c.r.Kill()
		c.rep.PowerLoss()
		c.px.SetFaults(faultproxy.Faults{RefuseProb: 1})
		c.checkReplicaBoundary(n, kind)
		undo = func() { c.px.SetFaults(faultproxy.Faults{}) }
	case faultNetwork:
		f := faultproxy.Faults{DropProb: 0.3, MaxCutBytes: 2 << 20, FlipProb: 0.05, TruncateProb: 0.1,
			Delay: time.Duration(c.rng.IntN(3)) * time.Millisecond, Seed: c.rng.Int64()}
		c.px.SetFaults(f)
		undo = func() { c.px.SetFaults(faultproxy.Faults{}) }
	}
	select {
	case <-w.done:
	case <-time.After(dur + 30*time.Second):
		t.Fatalf("round %d (%s): writer still running %v after its end", n, kind, dur+30*time.Second)
	}
	out := strings.TrimSpace(w.out.String())
	acked, nacked := parseWriterLog(t, logPath)
	synced, nsynced := parseWriterLog(t, syncLog)
	var maxGen uint64
	if i := strings.Index(out, "maxgen="); i >= 0 {
		fmt.Sscanf(out[i:], "maxgen=%d", &maxGen)
	}
	for _, g := range acked {
		maxGen = max(maxGen, g)
	}
	c.nextGen = max(c.nextGen, maxGen+1)
	if !primaryDown && strings.Contains(out, `err="`) && !strings.Contains(out, `err=""`) {
		c.refused++
		t.Logf("round %d (%s): the guest saw an error: %s", n, kind, out)
	}
	for off, g := range acked {
		c.acked[off] = max(c.acked[off], g)
	}
	for off, g := range synced {
		c.synced[off] = max(c.synced[off], g)
	}

	if powerLoss {
		if kind != faultPowerJournal {
			c.src.PowerLoss()
		}
		if kind != faultPowerSource {
			c.jrn.PowerLoss()
		}
	}
	if undo != nil {
		undo()
	}
	if !c.r.Running() {
		c.r.Start()
	}
	if primaryDown {
		if err := c.m.TryRemount(); err != nil {
			t.Fatalf("round %d (%s): drfs does not mount again: %v", n, kind, err)
		}
	}

	// The model: after a power loss every fsynced write, otherwise every acknowledged one.
	want, what := c.acked, "acknowledged"
	if powerLoss {
		want, what = c.synced, "fsynced"
	}
	if powerLoss {
		c.syncCheck += len(want)
	} else {
		c.ackChecked += len(want)
	}
	lost, damaged, ex := lostBlocks(readBlocks(t, c.disk, true), want)
	t.Logf("round %d: %s at %v of %v: guest %d writes acknowledged, %d fsynced; %d %s blocks checked: %d lost, %d damaged",
		n, kind, at, dur, nacked, nsynced, len(want), what, lost, damaged)
	if lost+damaged > 0 {
		c.bytesLost += int64(lost+damaged) * blockfmt.Size
		msg := fmt.Sprintf("round %d (%s): %d of %d %s blocks lost, %d damaged", n, kind, lost, len(want), what, damaged)
		if kind == faultPowerSource || kind == faultPowerPrimary {
			msg += " (a power loss of the source after a checkpoint: the checkpoint syncs the source with syncfs, which LazyFS does not honour; TestPowerLoss_LazyFS measures the same)"
		}
		c.losses = append(c.losses, msg)
		t.Errorf("%s; for example:\n  %s", msg, strings.Join(ex, "\n  "))
	}
	c.baseline()
	c.catchUp(n, kind)
}

// baseline fsyncs the guest file and takes what it holds now as the model: a write lost in
// a round is reported once, not again in every later round.
func (c *campaign) baseline() {
	t := c.t
	fd, err := unix.Open(c.disk, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", c.disk, err)
	}
	err = unix.Fsync(fd)
	unix.Close(fd)
	if err != nil {
		t.Fatalf("fsync %s: %v", c.disk, err)
	}
	blocks := readBlocks(t, c.disk, true)
	c.acked, c.synced = map[int64]uint64{}, map[int64]uint64{}
	for i, b := range blocks {
		if _, gen, zero, ok := blockfmt.Parse(b); ok && !zero {
			c.acked[int64(i)*blockfmt.Size] = gen
			c.synced[int64(i)*blockfmt.Size] = gen
		}
	}
}

// catchUp waits for the replica to acknowledge everything and compares the trees: with the
// guest stopped, the replica must equal the primary at the acknowledged seq.
func (c *campaign) catchUp(n int, kind string) {
	t := c.t
	acked := c.m.Sync(2 * time.Minute)
	st := readReplicaState(t, c.r.Dir, c.m.Volume)
	if st.Applied != acked || !st.Consistent || st.Applying != nil {
		t.Errorf("round %d (%s): replica applied %d consistent %v applying %+v, primary acknowledged %d",
			n, kind, st.Applied, st.Consistent, st.Applying, acked)
	}
	checkPointChain(t, st)
	d := treeDiff(c.m.Src, c.r.DataDir(c.m.Volume))
	if len(d) == 0 {
		return
	}
	if len(d) > 10 {
		d = append(d[:10], fmt.Sprintf("... and %d more", len(d)-10))
	}
	if c.diverged != "" {
		// Reported once: a replica that diverged stays so (nothing makes the primary resend).
		t.Logf("round %d (%s): replica still differs from the primary (since %s):\n  %s", n, kind, c.diverged, strings.Join(d, "\n  "))
		return
	}
	c.diverged = fmt.Sprintf("round %d, %s", n, kind)
	msg := fmt.Sprintf("round %d (%s): replica caught up to seq %d differs from the primary", n, kind, acked)
	if kind == faultPowerReplica {
		msg += " (a power loss of the replica disk: the replica makes applied logs durable with syncfs, which LazyFS does not honour, then records them applied; the primary never resends them)"
	}
	c.losses = append(c.losses, msg)
	t.Errorf("%s:\n  %s", msg, strings.Join(d, "\n  "))
}

// checkReplicaBoundary checks a replica that was just killed (and maybe lost its unsynced
// data) once restarted with the primary held off: no half-applied log, and every block of the
// guest's file intact and no newer than the primary's.
func (c *campaign) checkReplicaBoundary(n int, kind string) {
	t := c.t
	c.r.Start()
	// Opening the volume rolls an interrupted apply back.
	if err := replicaGet(c.r, c.m.Volume); err != nil {
		t.Errorf("round %d (%s): GET volume on the restarted replica: %v", n, kind, err)
		return
	}
	st := readReplicaState(t, c.r.Dir, c.m.Volume)
	if st.Applying != nil || !st.Consistent {
		t.Errorf("round %d (%s): restarted replica: applying %+v consistent %v (a half-applied log)", n, kind, st.Applying, st.Consistent)
	}
	checkPointChain(t, st)
	p := filepath.Join(c.r.DataDir(c.m.Volume), "disk.img")
	if _, err := os.Stat(p); err != nil {
		return // not shipped yet
	}
	bad := 0
	var ex []string
	rblocks := readBlocks(t, p, false)
	pblocks := readBlocks(t, c.disk, true) // after: primary generations only grow
	for i, b := range rblocks {
		blk, gen, zero, ok := blockfmt.Parse(b)
		var pgen uint64
		if i < len(pblocks) {
			_, pgen, _, _ = blockfmt.Parse(pblocks[i])
		}
		var msg string
		switch {
		case !ok:
			msg = "torn or foreign data"
		case zero:
		case blk != uint64(i):
			msg = fmt.Sprintf("holds block %d", blk)
		case gen > pgen:
			msg = fmt.Sprintf("gen %d, newer than the primary's %d", gen, pgen)
		}
		if msg != "" {
			bad++
			if len(ex) < 5 {
				ex = append(ex, fmt.Sprintf("block %d: %s", i, msg))
			}
		}
	}
	t.Logf("round %d (%s): restarted replica at applied seq %d, %d bad blocks", n, kind, st.Applied, bad)
	if bad > 0 {
		t.Errorf("round %d (%s): replica at applied seq %d has %d damaged blocks:\n  %s", n, kind, st.Applied, bad, strings.Join(ex, "\n  "))
	}
}

// replicaGet asks a replica about a volume (which opens it and finishes any recovery).
func replicaGet(r *Replica, v string) error {
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + r.Addr + "/v1/volumes/" + v)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// finish verifies the replica and prints the campaign's figures.
func (c *campaign) finish() {
	t := c.t
	c.m.Sync(2 * time.Minute)
	out, err := drfsCmd(t, 5*time.Minute, "verify", "--state", c.m.State)
	if err != nil {
		t.Errorf("drfs verify after the campaign: %v\n%s", err, out)
	} else {
		t.Logf("drfs verify: %s", strings.TrimSpace(out))
	}
	var kinds []string
	for k := range c.faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	fmt.Fprintf(&b, "torture: %d rounds\n", c.rounds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %-36s %d\n", k, c.faults[k])
	}
	fmt.Fprintf(&b, "  LazyFS power losses: source %d, journal %d, replica %d\n", c.src.Crashes, c.jrn.Crashes, c.rep.Crashes)
	fmt.Fprintf(&b, "  acknowledged writes checked %d, fsynced writes checked %d, rounds where the guest saw an error %d\n",
		c.ackChecked, c.syncCheck, c.refused)
	fmt.Fprintf(&b, "  bytes lost: %d\n", c.bytesLost)
	for _, l := range c.losses {
		fmt.Fprintf(&b, "  LOSS %s\n", l)
	}
	t.Log(b.String())
	fmt.Fprint(os.Stderr, b.String())
}
