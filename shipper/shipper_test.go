package shipper

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"drfs/changelog"
	"drfs/internal/logtest"
	"drfs/journal"
	"drfs/replica"
	"drfs/volume"
	"drfs/wire"
)

func TestParseSchedule(t *testing.T) {
	for _, c := range []struct {
		interval string
		rpo      time.Duration
		want     string
		err      bool
	}{
		{"", 0, "every 30s", false},
		{"5m", 0, "every 5m", false},
		{"continuous", 0, "continuous", false},
		{"", 30 * time.Second, "rpo 30s", false},
		{"30s", 30 * time.Second, "", true},
		{"banana", 0, "", true},
		{"-5s", 0, "", true},
		{"", time.Millisecond, "", true},
	} {
		s, err := ParseSchedule(c.interval, c.rpo)
		if (err != nil) != c.err || (err == nil && s.String() != c.want) {
			t.Errorf("ParseSchedule(%q, %s) = %v, %v; want %q, err=%v", c.interval, c.rpo, s, err, c.want, c.err)
		}
	}
}

// openLocal opens file:// replicas as drfs mount does.
func openLocal(dir, vol string, logger *slog.Logger) (Target, error) {
	return replica.OpenLocalTarget(dir, vol, replica.Options{Logger: logger, PreparePrimary: volume.Prepare})
}

type env struct {
	vol    *volume.Volume
	repDir string
	target Target
	fd     int
	ino    uint64
	path   string
	sh     *Shipper
	cancel context.CancelFunc
	done   chan struct{}
}

type fileRef string

func (f fileRef) JournalPath() (string, bool) { return string(f), true }

// slowTarget delays every Send, standing in for a slow WAN link.
type slowTarget struct {
	Target
	mu    sync.Mutex
	delay time.Duration
	down  bool
}

func (s *slowTarget) Send(ctx context.Context, b []byte) (uint64, error) {
	s.mu.Lock()
	d, down := s.delay, s.down
	s.mu.Unlock()
	if down {
		return 0, context.DeadlineExceeded
	}
	time.Sleep(d)
	return s.Target.Send(ctx, b)
}

func (s *slowTarget) State(ctx context.Context) (wire.State, error) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		return wire.State{}, context.DeadlineExceeded
	}
	return s.Target.State(ctx)
}

func newEnv(t *testing.T, cfg Config, wrap func(Target) Target) *env {
	t.Helper()
	d := t.TempDir()
	src := filepath.Join(d, "src")
	os.Mkdir(src, 0o755)
	vol, err := volume.Open(volume.Config{Source: src, State: filepath.Join(d, "state"), CheckpointInterval: -1, SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{vol: vol, repDir: filepath.Join(d, "rep")}
	tgt, err := OpenTarget("file://"+e.repDir, vol.Name(), nil, false, openLocal, logtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	e.target = tgt
	if wrap != nil {
		e.target = wrap(tgt)
	}
	// A file written through the volume API, as the FUSE layer would.
	e.path = "disk.img"
	unlock := vol.LockNamespace()
	e.fd, err = unix.Open(filepath.Join(src, e.path), unix.O_RDWR|unix.O_CREAT, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Fstat(e.fd, &st)
	e.ino = st.Ino
	vol.Record(journal.OpCreate{Path: e.path, Mode: st.Mode, Ino: st.Ino})
	unlock()

	cfg.Volume, cfg.Target, cfg.Logger = vol, e.target, logtest.Logger(t)
	if e.sh, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan struct{})
	go func() { defer close(e.done); e.sh.Run(ctx) }()
	t.Cleanup(func() {
		e.cancel()
		<-e.done
		e.sh.Close()
		unix.Close(e.fd)
		tgt.Close()
		vol.Close()
	})
	return e
}

func (e *env) write(t *testing.T, off int64, data []byte) {
	t.Helper()
	if _, err := e.vol.Write(fileRef(e.path), e.ino, e.fd, data, off); err != nil {
		t.Fatal(err)
	}
}

func (e *env) sync(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.sh.SyncNow(ctx); err != nil {
		t.Fatalf("SyncNow: %v (status %+v)", err, e.sh.Status())
	}
}

func (e *env) checkEqual(t *testing.T) {
	t.Helper()
	a, _ := os.ReadFile(filepath.Join(e.vol.Source(), e.path))
	b, err := os.ReadFile(filepath.Join(e.repDir, e.vol.Name(), "data", e.path))
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("replica differs from the source (len %d vs %d, err %v)", len(a), len(b), err)
	}
}

// fakeClock is a lag clock that moves only when the test says so.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// gateTarget holds every Send while closed, standing in for a link slower than any RPO.
type gateTarget struct {
	Target
	mu     sync.Mutex
	closed bool
}

func (g *gateTarget) setClosed(c bool) {
	g.mu.Lock()
	g.closed = c
	g.mu.Unlock()
}

func (g *gateTarget) Send(ctx context.Context, b []byte) (uint64, error) {
	for {
		g.mu.Lock()
		closed := g.closed
		g.mu.Unlock()
		if !closed {
			return g.Target.Send(ctx, b)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestShipper_RPO: the RPO schedule ships once the lag (by the shipper's clock) reaches half
// the target, not before, and a lag past the target counts one violation. The lag clock is
// the test's, so the outcome does not depend on the machine's speed.
func TestShipper_RPO(t *testing.T) {
	clk := newFakeClock()
	var gate *gateTarget
	e := newEnv(t, Config{Schedule: Schedule{RPO: 600 * time.Millisecond}, Now: clk.Now}, func(tg Target) Target {
		gate = &gateTarget{Target: tg}
		return gate
	})
	e.sync(t)
	last := func() uint64 { return uint64(e.vol.Journal().LastSeq()) }
	lag := func() time.Duration { return time.Duration(e.sh.Status().LagSeconds * float64(time.Second)) }
	// dirty writes and waits until the shipper tracks the write's age.
	dirty := func(i int) {
		t.Helper()
		e.write(t, int64(i)*4096, bytes.Repeat([]byte{byte(i)}, 4096))
		waitFor(t, "the write's lag to be tracked", func() bool {
			clk.Advance(time.Millisecond)
			return lag() > 0
		})
	}

	for i := range 3 {
		dirty(i)
		if l := lag(); l >= 200*time.Millisecond {
			t.Fatalf("round %d: lag %s before the test moved the clock", i, l)
		}
		clk.Advance(200*time.Millisecond - lag())
		time.Sleep(100 * time.Millisecond)
		if acked := e.sh.Status().AckedSeq; acked >= last() {
			t.Fatalf("round %d: shipped at a lag of %s, under half the 600ms target", i, lag())
		}
		clk.Advance(150 * time.Millisecond)
		waitFor(t, "the schedule to ship at half the target", func() bool { return e.sh.Status().AckedSeq >= last() })
		waitFor(t, "the lag to clear", func() bool { return lag() == 0 })
	}
	if v := e.sh.Status().RPOViolations; v != 0 {
		t.Fatalf("after shipping on schedule: %d RPO violations", v)
	}

	// A link slower than the target: the log is in flight while the lag passes it.
	gate.setClosed(true)
	dirty(10)
	clk.Advance(1500 * time.Millisecond)
	waitFor(t, "an RPO violation", func() bool { return e.sh.Status().RPOViolations > 0 })
	if l := lag(); l < 1500*time.Millisecond {
		t.Fatalf("status lag %s, want at least 1.5s", l)
	}
	gate.setClosed(false)
	e.sync(t)
	waitFor(t, "the lag to clear", func() bool { return lag() == 0 })
	if v := e.sh.Status().RPOViolations; v != 1 {
		t.Fatalf("after the slow log: %d RPO violations, want 1", v)
	}
	e.checkEqual(t)
}

// TestShipper_BWLimitPacesLogs: the shipper's own link holds its logs to BWLimit on the wire,
// and a shared link hands the shipper's place to the next volume once it is closed.
func TestShipper_BWLimitPacesLogs(t *testing.T) {
	e := newEnv(t, Config{Schedule: Schedule{Continuous: true}, BWLimit: 1 << 20}, nil)
	e.sync(t)
	data := make([]byte, 768<<10)
	chacha := rand.NewChaCha8([32]byte{1})
	chacha.Read(data) // incompressible: the wire carries all of it
	start := time.Now()
	e.write(t, 0, data)
	e.sync(t)
	// 768 KiB at 1 MiB/s less one 20 ms burst: never under 0.7 s.
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Fatalf("768 KiB reached the replica in %v under a 1 MiB/s limit", d)
	}
	e.checkEqual(t)
	if st := e.sh.Status(); st.Link == nil || st.Link.ShareRatio != 1 || st.Link.Site == "" {
		t.Fatalf("status of the shipper's link: %+v", st.Link)
	}
}

func TestShipper_DegradeAndResync(t *testing.T) {
	var slow *slowTarget
	e := newEnv(t, Config{Schedule: Schedule{Continuous: true}, JournalMax: 3 << 20}, func(tg Target) Target {
		slow = &slowTarget{Target: tg}
		return slow
	})
	e.write(t, 0, bytes.Repeat([]byte{1}, 64<<20/16))
	e.sync(t)
	slow.mu.Lock()
	slow.down = true
	slow.mu.Unlock()
	// 8 MiB of scattered writes with the replica away: past --journal-max the journal is
	// folded into dirty extents, and writes never block.
	for i := 0; i < 2048; i++ {
		e.write(t, int64((i*7919)%4096)*4096, bytes.Repeat([]byte{byte(i)}, 4096))
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.sh.Status().State != "degraded" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := e.sh.Status(); st.State != "degraded" {
		t.Fatalf("state %q, want degraded (journal %d bytes)", st.State, e.vol.Journal().Size())
	}
	if !e.vol.ResyncPending() {
		t.Fatal("no dirty extents recorded")
	}
	slow.mu.Lock()
	slow.down = false
	slow.mu.Unlock()
	e.sync(t)
	e.checkEqual(t)
	if e.vol.ResyncPending() {
		t.Fatal("extents still pending after the replica caught up")
	}
	st, _ := e.target.State(context.Background())
	if !st.Consistent || st.Applied != uint64(e.vol.Journal().LastSeq()) {
		t.Fatalf("replica state %+v after resync, journal at %d", st, e.vol.Journal().LastSeq())
	}
}

// flakyTarget fails every Send after the first ok ones, until it is healed.
type flakyTarget struct {
	Target
	mu    sync.Mutex
	ok    int
	sent  int64
	heal  bool
	count int
}

func (f *flakyTarget) Send(ctx context.Context, b []byte) (uint64, error) {
	f.mu.Lock()
	f.count++
	if !f.heal && f.count > f.ok {
		f.mu.Unlock()
		return 0, context.DeadlineExceeded
	}
	f.sent += int64(len(b))
	f.mu.Unlock()
	return f.Target.Send(ctx, b)
}

// An initial sync cut short resumes where it stopped: what already arrived is found equal by
// block hash and not sent again.
func TestShipper_InitialSyncResumes(t *testing.T) {
	d := t.TempDir()
	src := filepath.Join(d, "src")
	os.Mkdir(src, 0o755)
	for i := range 4 {
		// Incompressible, so the bytes on the wire say how much data travelled.
		b := make([]byte, 20<<20)
		rand.NewChaCha8([32]byte{byte(i)}).Read(b)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("disk%d.raw", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vol, err := volume.Open(volume.Config{Source: src, State: filepath.Join(d, "state"), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	tgt, err := OpenTarget("file://"+filepath.Join(d, "rep"), vol.Name(), nil, false, openLocal, logtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	// The link is not measured: resync logs carry link.ProvisionalLogBytes (4 MiB); 6 of them pass.
	ft := &flakyTarget{Target: tgt, ok: 6}
	sh, err := New(Config{Volume: vol, Target: ft, Schedule: Schedule{Continuous: true}, Logger: logtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sh.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ft.mu.Lock()
		n, first := ft.count, ft.sent
		ft.mu.Unlock()
		if n >= ft.ok+2 {
			if first == 0 {
				t.Fatal("nothing arrived before the link failed")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the initial sync never reached the failing link (status %+v)", sh.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ft.mu.Lock()
	firstPass := ft.sent
	ft.heal = true
	ft.mu.Unlock()
	sctx, scancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer scancel()
	if _, err := sh.SyncNow(sctx); err != nil {
		t.Fatalf("SyncNow: %v (status %+v)", err, sh.Status())
	}
	ft.mu.Lock()
	second := ft.sent - firstPass
	ft.mu.Unlock()
	for i := range 4 {
		a, _ := os.ReadFile(filepath.Join(src, fmt.Sprintf("disk%d.raw", i)))
		b, _ := os.ReadFile(filepath.Join(d, "rep", vol.Name(), "data", fmt.Sprintf("disk%d.raw", i)))
		if !bytes.Equal(a, b) {
			t.Fatalf("disk%d.raw differs after the resumed sync", i)
		}
	}
	t.Logf("first pass sent %d bytes before the link failed, the resumed pass %d", firstPass, second)
	if firstPass < 16<<20 {
		t.Fatalf("only %d bytes arrived before the link failed: the test cannot tell a resume from a restart", firstPass)
	}
	if second > 80<<20-firstPass+(1<<20) {
		t.Fatalf("the resumed pass sent %d bytes: it started over instead of resuming (first pass %d)", second, firstPass)
	}
}

// gaugeValues gathers reg and returns every gauge as name{label=value,...} -> value.
func gaugeValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetGauge() == nil {
				continue
			}
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			res[k] = m.GetGauge().GetValue()
		}
	}
	return res
}

func TestShipper_StatusMetrics(t *testing.T) {
	e := newEnv(t, Config{Schedule: Schedule{RPO: 30 * time.Second}, JournalMax: 10 << 30}, nil)
	reg := prometheus.NewRegistry()
	if err := e.sh.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	e.write(t, 0, bytes.Repeat([]byte{1}, 8192))
	e.sync(t)
	waitFor(t, "the replicating state", func() bool { return e.sh.Status().State == wire.StateReplicating })
	want := map[string]float64{
		"drfs_shipper_rpo_target_seconds":                    30,
		"drfs_shipper_journal_max_bytes":                     10 << 30,
		"drfs_shipper_failover_in_doubt":                     0,
		"drfs_shipper_resync_pending":                        0,
		"drfs_shipper_verify_differences":                    0,
		"drfs_shipper_replication_state{state=replicating}":  1,
		"drfs_shipper_replication_state{state=disconnected}": 0,
		"drfs_shipper_replication_state{state=fenced}":       0,
		"drfs_shipper_replication_state{state=degraded}":     0,
		"drfs_shipper_replication_state{state=connecting}":   0,
		"drfs_shipper_replication_state{state=syncing}":      0,
		"drfs_shipper_replication_state{state=demoted}":      0,
	}
	check := func(want map[string]float64) {
		t.Helper()
		got := gaugeValues(t, reg)
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s = %v (exported %v), want %v", k, g, ok, v)
			}
		}
	}
	check(want)

	// A difference behind drfs's back: the next verify counts it, a clean one clears it.
	rep := filepath.Join(e.repDir, e.vol.Name(), "data", e.path)
	orig, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rep, bytes.Repeat([]byte{2}, len(orig)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e.sh.Verify(ctx)
	if err != nil || len(res.Differences) == 0 {
		t.Fatalf("verify of a changed replica: %v, %d differences", err, len(res.Differences))
	}
	check(map[string]float64{"drfs_shipper_verify_differences": float64(len(res.Differences))})
	if err := os.WriteFile(rep, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := e.sh.Verify(ctx); err != nil || len(res.Differences) != 0 {
		t.Fatalf("verify of a restored replica: %v, %+v", err, res.Differences)
	}
	check(map[string]float64{"drfs_shipper_verify_differences": 0})
}

// durableTarget checks that nothing reaches the replica beyond what the journal made durable:
// a log's ToSeq, and the end of a resync's tolerant window.
type durableTarget struct {
	Target
	j   *journal.Journal
	mu  sync.Mutex
	bad []string
	n   int
}

func (d *durableTarget) check(what string, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n++
	if dur := uint64(d.j.DurableSeq()); seq > dur {
		d.bad = append(d.bad, fmt.Sprintf("%s reaches seq %d, journal durable to %d", what, seq, dur))
	}
}

func (d *durableTarget) Send(ctx context.Context, b []byte) (uint64, error) {
	l, err := changelog.Unmarshal(b, changelog.Limits{})
	if err == nil {
		d.check(fmt.Sprintf("%s log %d-%d", l.Kind, l.FromSeq, l.ToSeq), l.ToSeq)
	}
	return d.Target.Send(ctx, b)
}

func (d *durableTarget) SyncComplete(ctx context.Context, id string, gen, seq, end uint64, full bool) error {
	d.check("sync-complete", end)
	return d.Target.SyncComplete(ctx, id, gen, seq, end, full)
}

// TestShipper_ShipsOnlyDurableSeqs: a resync log and a resync's completion name seqs the
// replica records; were they not durable here, a power loss of the journal would hand the same
// seqs to new records the replica believes it has, and the sides would diverge for good.
func TestShipper_ShipsOnlyDurableSeqs(t *testing.T) {
	var dt *durableTarget
	var slow *slowTarget
	e := newEnv(t, Config{Schedule: Schedule{Continuous: true}, JournalMax: 3 << 20}, func(tg Target) Target {
		slow = &slowTarget{Target: tg}
		dt = &durableTarget{Target: slow}
		return dt
	})
	dt.j = e.vol.Journal()
	e.write(t, 0, bytes.Repeat([]byte{1}, 1<<20))
	e.sync(t)
	slow.mu.Lock()
	slow.down = true
	slow.mu.Unlock()
	for i := 0; i < 2048; i++ { // past --journal-max: degraded, then resynced
		e.write(t, int64((i*7919)%4096)*4096, bytes.Repeat([]byte{byte(i)}, 4096))
	}
	waitFor(t, "degraded", func() bool { return e.sh.Status().State == "degraded" })
	slow.mu.Lock()
	slow.down = false
	slow.mu.Unlock()
	// Writes go on while the resync runs, none of them synced by the guest.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e.write(t, int64(i%4096)*4096, bytes.Repeat([]byte{byte(i + 7)}, 4096))
		}
	}()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	e.sync(t)
	dt.mu.Lock()
	defer dt.mu.Unlock()
	if dt.n == 0 {
		t.Fatal("nothing was shipped")
	}
	if len(dt.bad) > 0 {
		t.Fatalf("%d of %d messages named seqs not yet durable, e.g. %s", len(dt.bad), dt.n, dt.bad[0])
	}
}

// slowCompleteTarget holds every sync-complete after the first until released.
type slowCompleteTarget struct {
	Target
	release chan struct{}
	calls   atomic.Int32
	done    atomic.Bool
}

func (s *slowCompleteTarget) SyncComplete(ctx context.Context, id string, gen, seq, end uint64, full bool) error {
	if s.calls.Add(1) > 1 {
		<-s.release
	}
	err := s.Target.SyncComplete(ctx, id, gen, seq, end, full)
	s.done.Store(err == nil)
	return err
}

// TestShipper_SyncWaitsForResyncCompletion: drfs sync must not report the replica caught up
// while a repair pass has sent its blocks but not yet told the replica where it stands (the
// replica is still marked inconsistent then).
func TestShipper_SyncWaitsForResyncCompletion(t *testing.T) {
	var sc *slowCompleteTarget
	e := newEnv(t, Config{Schedule: Schedule{Continuous: true}}, func(tg Target) Target {
		sc = &slowCompleteTarget{Target: tg, release: make(chan struct{})}
		return sc
	})
	var once sync.Once
	release := func() { once.Do(func() { close(sc.release) }) }
	t.Cleanup(release) // registered after newEnv's: runs first, so the shipper can stop
	e.write(t, 0, bytes.Repeat([]byte{3}, 1<<20))
	e.sync(t) // the initial sync, completed
	sc.done.Store(false)
	// A region to repair (as after a crash), with the replica already at the journal's end.
	if err := e.vol.Meta().AddResync([]volume.Extent{{Path: e.path, Len: -1, Reason: "test"}}); err != nil {
		t.Fatal(err)
	}
	e.sh.Kick()
	returned := make(chan struct{})
	go func() { e.sync(t); close(returned) }()
	select {
	case <-returned:
		t.Fatal("sync returned before the repair's completion reached the replica")
	case <-time.After(500 * time.Millisecond):
	}
	release()
	<-returned
	if !sc.done.Load() {
		t.Fatal("sync returned but sync-complete did not succeed")
	}
	e.checkEqual(t)
}
