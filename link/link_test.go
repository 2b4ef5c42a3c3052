package link

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// demand is a member's demand that a test sets.
type demand struct {
	mu sync.Mutex
	d  Demand
}

func (d *demand) get() Demand {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.d
}

func (d *demand) set(f func(*Demand)) {
	d.mu.Lock()
	f(&d.d)
	d.mu.Unlock()
}

func testLink(t *testing.T, cfg Config) (*Link, *clock) {
	t.Helper()
	c := newClock()
	cfg.Now = c.Now
	cfg.Tick = -1
	if cfg.Site == "" {
		cfg.Site = "dr"
	}
	l := New(cfg)
	t.Cleanup(l.Close)
	return l, c
}

// acquireAsync starts an Acquire and returns the channel its grant arrives on. It returns
// once the request is queued.
func acquireAsync(t *testing.T, m *Member) chan *Grant {
	t.Helper()
	ch := make(chan *Grant, 1)
	l := m.l
	count := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		n := 0
		for _, w := range l.waiters {
			if w.m == m {
				n++
			}
		}
		return n
	}
	before := count()
	go func() {
		g, err := m.Acquire(context.Background())
		if err != nil {
			close(ch)
			return
		}
		ch <- g
	}()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if len(ch) > 0 || count() > before {
			return ch
		}
	}
	t.Fatalf("%s: request never queued", m.name)
	return nil
}

func mustGrant(t *testing.T, ch chan *Grant, who string) *Grant {
	t.Helper()
	select {
	case g, ok := <-ch:
		if !ok {
			t.Fatalf("%s: acquire failed", who)
		}
		return g
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no grant", who)
	}
	return nil
}

func noGrant(t *testing.T, ch chan *Grant, who string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s was granted the link, want it to wait", who)
	case <-time.After(20 * time.Millisecond):
	}
}

func join(l *Link, name string, p Params) (*Member, *demand) {
	d := &demand{}
	return l.Join(name, p, d.get), d
}

// The link goes to the most important tier first, whatever the order of the requests.
func TestLink_TierFirst(t *testing.T) {
	l, c := testLink(t, Config{Slots: 1})
	a, _ := join(l, "a", Params{Tier: 3, RPO: time.Minute})
	bronze, _ := join(l, "bronze", Params{Tier: 9, RPO: time.Hour})
	gold, _ := join(l, "gold", Params{Tier: 1, RPO: 30 * time.Second})
	ga := mustGrant(t, acquireAsync(t, a), "a")
	c.Add(time.Second)
	bch := acquireAsync(t, bronze)
	c.Add(time.Second)
	gch := acquireAsync(t, gold)
	noGrant(t, gch, "gold")
	ga.Done(1000, 1000, false, nil)
	gg := mustGrant(t, gch, "gold")
	noGrant(t, bch, "bronze")
	gg.Done(1000, 1000, false, nil)
	mustGrant(t, bch, "bronze").Done(0, 0, false, nil)
}

// Within a tier, the earliest deadline goes first: a 30 s target whose oldest change is 20 s
// old (10 s left) before a 1 min target whose oldest change is 5 s old (55 s left).
func TestLink_EarliestDeadlineWithinTier(t *testing.T) {
	l, c := testLink(t, Config{Slots: 1})
	blocker, _ := join(l, "blocker", Params{Tier: 1})
	short, ds := join(l, "short", Params{Tier: 2, RPO: 30 * time.Second})
	long, dl := join(l, "long", Params{Tier: 2, RPO: time.Minute})
	now := c.Now()
	ds.set(func(d *Demand) { d.Pending, d.Oldest = 1<<20, now.Add(-20*time.Second) })
	dl.set(func(d *Demand) { d.Pending, d.Oldest = 1<<20, now.Add(-5*time.Second) })
	l.tick()
	g := mustGrant(t, acquireAsync(t, blocker), "blocker")
	lch := acquireAsync(t, long)
	sch := acquireAsync(t, short)
	g.Done(0, 0, false, nil)
	gs := mustGrant(t, sch, "short")
	noGrant(t, lch, "long")
	gs.Done(0, 0, false, nil)
	mustGrant(t, lch, "long").Done(0, 0, false, nil)

	// Move the deadlines: now long's is the earlier one (10 s left against 30 s).
	ds.set(func(d *Demand) { d.Oldest = now })
	dl.set(func(d *Demand) { d.Oldest = now.Add(-50 * time.Second) })
	l.tick()
	g = mustGrant(t, acquireAsync(t, blocker), "blocker")
	sch = acquireAsync(t, short)
	lch = acquireAsync(t, long)
	g.Done(0, 0, false, nil)
	mustGrant(t, lch, "long").Done(0, 0, false, nil)
	mustGrant(t, sch, "short").Done(0, 0, false, nil)
}

// Aging: a bulk volume of tier 4 that has waited 4 × Aging is served before a request of the
// most important tier (at 3 × Aging it is at tier 1 and loses on the deadline); having been
// served, it waits again.
func TestLink_AgingServesTheStarving(t *testing.T) {
	l, c := testLink(t, Config{Slots: 1, Aging: time.Minute})
	gold, _ := join(l, "gold", Params{Tier: 1, RPO: 30 * time.Second})
	bulk, _ := join(l, "bulk", Params{Tier: 4, RPO: time.Hour})
	g := mustGrant(t, acquireAsync(t, gold), "gold")
	bch := acquireAsync(t, bulk)
	// For 3 minutes gold keeps the link: bulk is at effective tier 1 at most.
	for i := 0; i < 6; i++ {
		c.Add(30 * time.Second)
		gch := acquireAsync(t, gold)
		g.Done(0, 0, false, nil)
		g = mustGrant(t, gch, "gold")
	}
	noGrant(t, bch, "bulk")
	// After 4 minutes of waiting, bulk is at tier 0.
	c.Add(61 * time.Second)
	gch := acquireAsync(t, gold)
	g.Done(0, 0, false, nil)
	gb := mustGrant(t, bch, "bulk")
	noGrant(t, gch, "gold")
	gb.Done(0, 0, false, nil)
	mustGrant(t, gch, "gold").Done(0, 0, false, nil)
}

// A planned failover's drain goes ahead of everything.
func TestLink_UrgentFirst(t *testing.T) {
	l, _ := testLink(t, Config{Slots: 1})
	gold, _ := join(l, "gold", Params{Tier: 1, RPO: 30 * time.Second})
	bulk, _ := join(l, "bulk", Params{Tier: 9})
	g := mustGrant(t, acquireAsync(t, gold), "gold")
	gch := acquireAsync(t, gold)
	bch := acquireAsync(t, bulk)
	bulk.SetUrgent(true)
	g.Done(0, 0, false, nil)
	mustGrant(t, bch, "urgent bulk").Done(0, 0, false, nil)
	bulk.SetUrgent(false)
	mustGrant(t, gch, "gold").Done(0, 0, false, nil)
}

// One upload at a time; the next log starts once the previous one's body is sent, while it
// waits for its acknowledgement; no more than Slots logs are in flight.
func TestLink_PipelinesWithinSlots(t *testing.T) {
	l, _ := testLink(t, Config{Slots: 2})
	a, _ := join(l, "a", Params{})
	b, _ := join(l, "b", Params{})
	ga := mustGrant(t, acquireAsync(t, a), "a")
	bch := acquireAsync(t, b)
	noGrant(t, bch, "b while a uploads")
	r := ga.Reader(context.Background(), []byte("log"))
	if got, err := io.ReadAll(r); err != nil || string(got) != "log" {
		t.Fatalf("read %q, %v", got, err)
	}
	gb := mustGrant(t, bch, "b after a's upload")
	gb.Sent()
	ach := acquireAsync(t, a)
	noGrant(t, ach, "a with two logs in flight")
	ga.Done(3, 3, false, nil)
	mustGrant(t, ach, "a").Done(0, 0, false, nil)
	gb.Done(0, 0, false, errors.New("lost"))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight != 0 || l.uploading || len(l.waiters) != 0 {
		t.Fatalf("inflight %d uploading %v waiters %d after every grant ended", l.inflight, l.uploading, len(l.waiters))
	}
}

// A request given up (its context ends) leaves nothing behind, also when it was granted at
// the same moment; Leave wakes the member's requests.
func TestLink_CancelAndLeave(t *testing.T) {
	l, _ := testLink(t, Config{Slots: 1})
	a, _ := join(l, "a", Params{})
	b, _ := join(l, "b", Params{})
	ga := mustGrant(t, acquireAsync(t, a), "a")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := b.Acquire(ctx); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	ga.Done(0, 0, false, nil)
	gb := mustGrant(t, acquireAsync(t, b), "b")
	ach := acquireAsync(t, a)
	a.Leave()
	if _, ok := <-ach; ok {
		t.Fatal("a request of a member that left was granted")
	}
	if _, err := a.Acquire(context.Background()); !errors.Is(err, ErrLeft) {
		t.Fatalf("acquire after leave: %v", err)
	}
	gb.Done(0, 0, false, nil)
	if st := l.Status(); len(st.Members) != 1 || st.Members[0].Volume != "b" {
		t.Fatalf("members after a left: %+v", st.Members)
	}
}

// The capacity is measured only while the link is saturated, and is the lower of the budget
// and the measurement.
func TestLink_MeasuresSaturatedThroughput(t *testing.T) {
	l, c := testLink(t, Config{Slots: 1})
	a, _ := join(l, "a", Params{})
	// A trickle of small, unsaturated logs measures latency: no sample.
	for i := 0; i < 10; i++ {
		g := mustGrant(t, acquireAsync(t, a), "a")
		c.Add(500 * time.Millisecond)
		g.Done(100<<10, 100<<10, false, nil)
	}
	if st := l.Status(); st.MeasuredBytesPerSecond != 0 || st.CapacityBytesPerSecond != ProvisionalCapacity {
		t.Fatalf("measured %v capacity %v from unsaturated logs", st.MeasuredBytesPerSecond, st.CapacityBytesPerSecond)
	}
	// Full logs (cut at their limit): 2 MiB per second.
	for i := 0; i < 12; i++ {
		g := mustGrant(t, acquireAsync(t, a), "a")
		c.Add(time.Second)
		g.Done(2<<20, 2<<20, true, nil)
	}
	st := l.Status()
	if st.MeasuredBytesPerSecond < 1.9*(1<<20) || st.MeasuredBytesPerSecond > 2.1*(1<<20) || st.CapacityBytesPerSecond != st.MeasuredBytesPerSecond {
		t.Fatalf("measured %v, want 2 MiB/s", st.MeasuredBytesPerSecond)
	}
	// Bursts of full logs, each ending with a short one (a volume catching up): still measured,
	// within what the short tails cost.
	for i := 0; i < 8; i++ {
		for range 3 {
			g := mustGrant(t, acquireAsync(t, a), "a")
			c.Add(time.Second)
			g.Done(2<<20, 2<<20, true, nil)
		}
		g := mustGrant(t, acquireAsync(t, a), "a")
		c.Add(100 * time.Millisecond)
		g.Done(100<<10, 100<<10, false, nil)
	}
	if m := l.Status().MeasuredBytesPerSecond; m < 1.8*(1<<20) || m > 2.1*(1<<20) {
		t.Fatalf("measured %v from bursts with short tails, want about 2 MiB/s", m)
	}
	l.SetBudget(50 << 20)
	if st := l.Status(); st.CapacityBytesPerSecond != st.MeasuredBytesPerSecond {
		t.Fatalf("capacity %v with a budget above the measured %v", st.CapacityBytesPerSecond, st.MeasuredBytesPerSecond)
	}
	l.SetBudget(1 << 20)
	if st := l.Status(); st.CapacityBytesPerSecond != 1<<20 {
		t.Fatalf("capacity %v with a budget of 1 MiB/s", st.CapacityBytesPerSecond)
	}
}

// A log carries one quantum of link time, at most a tenth of the smallest RPO target, within
// [MinLogBytes, MaxLogBytes]; the raw size follows the compression ratio.
func TestLink_Quantum(t *testing.T) {
	l, _ := testLink(t, Config{Budget: 10 << 20})
	a, _ := join(l, "a", Params{RPO: time.Hour})
	if q := a.Quantum(); q != 20<<20 {
		t.Fatalf("quantum %d, want 2 s of 10 MiB/s", q)
	}
	b, _ := join(l, "b", Params{RPO: 5 * time.Second})
	if q := a.Quantum(); q != 5<<20 {
		t.Fatalf("quantum %d with a 5 s target, want 0.5 s of the link", q)
	}
	g := mustGrant(t, acquireAsync(t, b), "b")
	g.Done(4<<20, 1<<20, false, nil) // compresses 4:1
	if q := b.Quantum(); q <= 5<<20 {
		t.Fatalf("raw quantum %d of a volume that compresses 4:1, want more than the wire quantum", q)
	}
	l.SetBudget(100 << 10)
	if q := a.Quantum(); q != MinLogBytes {
		t.Fatalf("quantum %d on a slow link, want the minimum", q)
	}
}

// Until a link without a budget is measured, its logs are small and nobody is predicted at
// risk from the assumed capacity.
func TestLink_UnmeasuredIsCautious(t *testing.T) {
	l, c := testLink(t, Config{})
	a, d := join(l, "a", Params{Tier: 1, RPO: 5 * time.Second})
	if q := a.Quantum(); q != ProvisionalLogBytes {
		t.Fatalf("quantum %d on an unmeasured link, want %d", q, ProvisionalLogBytes)
	}
	now := c.Now()
	d.set(func(x *Demand) { x.Appended, x.Pending, x.Oldest = 1<<30, 1<<30, now.Add(-4*time.Second) })
	for range 4 {
		l.tick()
		c.Add(500 * time.Millisecond)
	}
	if st := l.Status().Members[0]; st.AtRisk {
		t.Fatalf("at risk on an unmeasured link: %+v", st)
	}
}

// Pacing keeps the bytes read through a grant's reader under the budget.
func TestGrant_ReaderPacesToBudget(t *testing.T) {
	l := New(Config{Site: "dr", Budget: 1 << 20, Tick: -1})
	defer l.Close()
	a, _ := join(l, "a", Params{})
	g, err := a.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("x"), 512<<10)
	start := time.Now()
	got, err := io.ReadAll(g.Reader(context.Background(), data))
	took := time.Since(start)
	g.Done(int64(len(data)), int64(len(data)), false, err)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	// 512 KiB at 1 MiB/s, less the initial burst: never under 0.45 s.
	if took < 450*time.Millisecond {
		t.Fatalf("512 KiB went through a 1 MiB/s link in %v", took)
	}
}

// overload runs a link of 1 MiB/s (budget) shared by gold (tier 1, RPO 30 s, writes
// 400 KiB/s) and bronze (tier 3, RPO 1 h, writes 1 MiB/s, 10 min behind) for a minute of
// plans, and returns the members' status and the log.
func overload(t *testing.T) (gold, bronze MemberStatus, log string) {
	var buf bytes.Buffer
	l, c := testLink(t, Config{Budget: 1 << 20, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	_, dg := join(l, "gold", Params{Tier: 1, RPO: 30 * time.Second})
	_, db := join(l, "bronze", Params{Tier: 3, RPO: time.Hour})
	start := c.Now()
	for i := 0; i <= 120; i++ {
		now := c.Now()
		el := now.Sub(start).Seconds()
		dg.set(func(d *Demand) {
			d.Appended = int64(el * 400 * 1024)
			d.Pending, d.Oldest = 2<<20, now.Add(-5*time.Second)
		})
		db.set(func(d *Demand) {
			d.Appended = int64(el * (1 << 20))
			d.Pending, d.Oldest = 600<<20, start.Add(-10*time.Minute)
		})
		l.tick()
		c.Add(500 * time.Millisecond)
	}
	st := l.Status()
	for _, m := range st.Members {
		switch m.Volume {
		case "gold":
			gold = m
		case "bronze":
			bronze = m
		}
	}
	return gold, bronze, buf.String()
}

// When the link cannot carry every volume, the higher tier keeps its target and the volume
// that will miss is named in advance, with when and by how much.
func TestLink_PredictsWhoMisses(t *testing.T) {
	gold, bronze, log := overload(t)
	if gold.AtRisk || gold.FallingBehind {
		t.Errorf("gold at risk %v, falling %v: %+v", gold.AtRisk, gold.FallingBehind, gold)
	}
	if gold.PlannedBytesPerSecond < gold.WriteBytesPerSecond {
		t.Errorf("gold planned %v below its writes %v", gold.PlannedBytesPerSecond, gold.WriteBytesPerSecond)
	}
	if !bronze.AtRisk || !bronze.FallingBehind {
		t.Fatalf("bronze not at risk: %+v", bronze)
	}
	// Bronze gets what gold leaves (~600 KiB/s of 1 MiB/s) and writes 1 MiB/s: its lag grows by
	// ~0.4 s a second from 10 min: it reaches 1 h in about (3600-600)/0.4 s.
	want := (3600.0 - 600) / (1 - bronze.PlannedBytesPerSecond/bronze.WriteBytesPerSecond)
	if bronze.MissInSeconds < 0.8*want || bronze.MissInSeconds > 1.2*want {
		t.Errorf("bronze misses in %.0f s, want about %.0f", bronze.MissInSeconds, want)
	}
	if bronze.PredictedLagSeconds <= 600 {
		t.Errorf("bronze predicted lag %v, want above its current 600 s", bronze.PredictedLagSeconds)
	}
	if n := strings.Count(log, "RPO target will be missed"); n != 1 || !strings.Contains(log, "volume=bronze") || strings.Contains(log, "volume=gold") {
		t.Errorf("want one warning, for bronze; log:\n%s", log)
	}
}

// With capacity to spare, nobody is at risk, and the leftover goes to whoever has a backlog.
func TestLink_NoRiskWhenTheLinkSuffices(t *testing.T) {
	l, c := testLink(t, Config{Budget: 10 << 20})
	_, dg := join(l, "gold", Params{Tier: 1, RPO: 30 * time.Second})
	_, db := join(l, "bronze", Params{Tier: 3, RPO: time.Hour})
	start := c.Now()
	for i := 0; i <= 60; i++ {
		now := c.Now()
		el := now.Sub(start).Seconds()
		dg.set(func(d *Demand) { d.Appended, d.Pending, d.Oldest = int64(el*(1<<20)), 1<<20, now.Add(-time.Second) })
		db.set(func(d *Demand) { d.Appended, d.Pending, d.Oldest = int64(el*(1<<20)), 100<<20, now.Add(-time.Minute) })
		l.tick()
		c.Add(500 * time.Millisecond)
	}
	for _, m := range l.Status().Members {
		if m.AtRisk || m.FallingBehind {
			t.Errorf("%s at risk on a link with room: %+v", m.Volume, m)
		}
	}
}

// A burst bigger than the link carries within the target is at risk even when the volume
// writes nothing more: its last bytes land after the target.
func TestLink_BurstAtRisk(t *testing.T) {
	l, c := testLink(t, Config{Budget: 1 << 20})
	_, d := join(l, "bulk", Params{Tier: 5, RPO: 20 * time.Second})
	now := c.Now()
	d.set(func(x *Demand) { x.Appended, x.Pending, x.Oldest = 24<<20, 24<<20, now })
	for range 3 {
		l.tick()
		c.Add(500 * time.Millisecond)
	}
	st := l.Status().Members[0]
	if !st.AtRisk || st.PredictedLagSeconds < 20 {
		t.Fatalf("24 MiB at 1 MiB/s with a 20 s target: %+v", st)
	}
}

// Estimate counts the backlog of the members ahead in the order, not of those behind.
func TestMember_EstimateCountsThoseAhead(t *testing.T) {
	l, c := testLink(t, Config{Budget: 1 << 20})
	gold, dg := join(l, "gold", Params{Tier: 1, RPO: 30 * time.Second})
	bronze, db := join(l, "bronze", Params{Tier: 3, RPO: time.Hour})
	now := c.Now()
	dg.set(func(d *Demand) { d.Pending, d.Oldest = 1<<20, now })
	db.set(func(d *Demand) { d.Pending, d.Oldest = 10<<20, now })
	l.tick()
	if e := gold.Estimate(1 << 20); e < 900*time.Millisecond || e > 1100*time.Millisecond {
		t.Errorf("gold's estimate %v for 1 MiB at 1 MiB/s with bronze behind it", e)
	}
	if e := bronze.Estimate(10 << 20); e < 10*time.Second || e > 12*time.Second {
		t.Errorf("bronze's estimate %v for 10 MiB behind gold's 1 MiB at 1 MiB/s", e)
	}
}

// The metrics carry site and volume labels; a volume that left is no longer exported.
func TestLink_Metrics(t *testing.T) {
	l, _ := testLink(t, Config{Budget: 1 << 20})
	a, _ := join(l, "a", Params{Tier: 1, RPO: time.Minute})
	b, _ := join(l, "b", Params{Tier: 2, RPO: time.Minute})
	g := mustGrant(t, acquireAsync(t, a), "a")
	g.Done(1000, 500, false, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(l.Collector())
	if n, err := testutil.GatherAndCount(reg, "drfs_link_share_ratio"); err != nil || n != 2 {
		t.Fatalf("share series %d, %v", n, err)
	}
	want := `
# HELP drfs_link_wire_bytes_total Change-log bytes the replica acknowledged over the link, by volume.
# TYPE drfs_link_wire_bytes_total counter
drfs_link_wire_bytes_total{site="dr",volume="a"} 500
drfs_link_wire_bytes_total{site="dr",volume="b"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "drfs_link_wire_bytes_total"); err != nil {
		t.Fatal(err)
	}
	b.Leave()
	if n, _ := testutil.GatherAndCount(reg, "drfs_link_share_ratio"); n != 1 {
		t.Fatalf("share series %d after b left", n)
	}
	// A second link (another site) registers beside the first one.
	l2, _ := testLink(t, Config{Site: "usb"})
	join(l2, "a", Params{})
	if err := reg.Register(l2.Collector()); err != nil {
		t.Fatalf("a second link's collector: %v", err)
	}
	if n, err := testutil.GatherAndCount(reg, "drfs_link_capacity_bytes_per_second"); err != nil || n != 2 {
		t.Fatalf("capacity series of two links: %d, %v", n, err)
	}
	if problems, err := testutil.CollectAndLint(l.Collector()); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
}
