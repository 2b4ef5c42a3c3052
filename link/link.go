package link

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"drfs/internal/logging"
)

// Defaults of Config.
const (
	DefaultSlots   = 2
	DefaultQuantum = 2 * time.Second
	DefaultAging   = time.Minute
	DefaultTick    = 500 * time.Millisecond
	// ProvisionalCapacity is the capacity assumed before the link was measured, when no
	// budget is configured; no volume is predicted at risk from it.
	ProvisionalCapacity = 10 << 20
	// ProvisionalLogBytes is the wire size of a log until the link is measured (or has a
	// budget): small enough that a log of a bulk volume does not hold the link long on a link
	// narrower than ProvisionalCapacity, large enough to measure it.
	ProvisionalLogBytes = 4 << 20
	// MinLogBytes and MaxLogBytes bound the wire bytes of one grant.
	MinLogBytes = 256 << 10
	MaxLogBytes = 64 << 20
)

// window is the period shares and the busy ratio are reported over.
const window = 30 * time.Second

// ErrLeft is returned by Acquire once the member left the link.
var ErrLeft = errors.New("link: member left the link")

// Config configures a Link.
type Config struct {
	Site string // the replica site this link reaches, for messages and metrics
	// Budget is the operator's link budget in bytes per second, shared by the members;
	// 0: none (the capacity is measured).
	Budget  int64
	Slots   int           // logs in flight at once (default 2)
	Quantum time.Duration // link time one log may take (default 2 s)
	Aging   time.Duration // a waiting member rises one tier per Aging (default 1 min)
	// Tick is the planning period (default 500 ms); negative: no planning goroutine (tests
	// call tick themselves).
	Tick   time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// Params are what a member asks of the link.
type Params struct {
	Tier     int           // 1 (most important) .. 9; 0 is 9
	RPO      time.Duration // RPO target; 0: none
	Interval time.Duration // schedule interval when there is no RPO target (0: continuous)
}

func (p Params) target() time.Duration {
	if p.RPO > 0 {
		return p.RPO
	}
	return p.Interval
}

func (p Params) tier() int {
	if p.Tier <= 0 {
		return 9
	}
	return p.Tier
}

// Demand is a member's backlog, sampled by the link every Tick. The function returning it is
// called without any lock of the link held and must not call into the link.
type Demand struct {
	Pending  int64     // raw bytes not yet acknowledged by the replica (journal and resync)
	Appended int64     // raw bytes ever appended to the member's journal (its write rate)
	Oldest   time.Time // when the oldest unacknowledged change was made; zero: none
}

// Link is one replica site's link, shared by the volumes replicating to it.
type Link struct {
	cfg  Config
	log  *slog.Logger
	lim  *rate.Limiter
	stop chan struct{}
	wg   sync.WaitGroup
	m    *metrics

	mu        sync.Mutex
	budget    int64
	members   []*Member
	waiters   []*waiter
	inflight  int
	uploading bool
	closed    bool
	started   time.Time

	measured   float64 // bytes per second; 0 until measured
	busySince  time.Time
	busyTotal  time.Duration
	win        capWindow
	flying     []*Grant     // logs in flight
	lastDone   time.Time    // when the last log in flight ended
	busyRing   []busySample // for the busy ratio over the last window
	wireEvents []wireEvent  // acknowledged bytes of the last window, by member
}

// capWindow accumulates the logs that measure the link: their bytes, those of the logs that
// filled it, and the busy time they account for.
type capWindow struct {
	bytes, satBytes int64
	busy            time.Duration
}

type busySample struct {
	at   time.Time
	busy time.Duration
}

type wireEvent struct {
	at    time.Time
	m     *Member
	bytes int64
}

type waiter struct {
	m     *Member
	since time.Time
	ch    chan *Grant
}

// New returns a link; Close stops its planning.
func New(cfg Config) *Link {
	if cfg.Slots <= 0 {
		cfg.Slots = DefaultSlots
	}
	if cfg.Quantum <= 0 {
		cfg.Quantum = DefaultQuantum
	}
	if cfg.Aging <= 0 {
		cfg.Aging = DefaultAging
	}
	if cfg.Tick == 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Link{cfg: cfg, log: logging.OrDiscard(cfg.Logger).With("site", cfg.Site), stop: make(chan struct{}),
		lim: rate.NewLimiter(rate.Inf, 0), m: newMetrics()}
	l.started = cfg.Now()
	l.setBudgetLocked(cfg.Budget)
	if cfg.Tick > 0 {
		l.wg.Add(1)
		go l.loop()
	}
	return l
}

// Site is the name of the site the link reaches.
func (l *Link) Site() string { return l.cfg.Site }

// Close stops the link's planning; members still holding grants may finish them.
func (l *Link) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	l.wg.Wait()
}

func (l *Link) loop() {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.tick()
		}
	}
}

// SetBudget changes the link budget (bytes per second; 0: none, measured).
func (l *Link) SetBudget(b int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setBudgetLocked(b)
}

func (l *Link) setBudgetLocked(b int64) {
	l.budget = b
	if b <= 0 {
		l.lim.SetLimit(rate.Inf)
		return
	}
	l.lim.SetLimit(rate.Limit(b))
	l.lim.SetBurst(int(burstFor(b)))
}

// burstFor is the token bucket's burst for budget b: 20 ms of the budget, 16 KiB at least.
func burstFor(b int64) int64 { return max(b/50, 16<<10) }

// Budget is the configured budget (0: none).
func (l *Link) Budget() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.budget
}

// Join adds a member: a volume replicating over the link. demand is sampled every Tick.
func (l *Link) Join(volume string, p Params, demand func() Demand) *Member {
	m := &Member{l: l, name: volume, demand: demand, p: p, ratio: 1}
	l.mu.Lock()
	l.members = append(l.members, m)
	l.mu.Unlock()
	return m
}

// measureWindow is the busy time one capacity sample spans.
const measureWindow = 4 * time.Second

// capacityLocked is the capacity planned with, and whether it was measured.
func (l *Link) capacityLocked() (float64, bool) {
	switch {
	case l.measured > 0 && l.budget > 0:
		return min(l.measured, float64(l.budget)), true
	case l.measured > 0:
		return l.measured, true
	case l.budget > 0:
		return float64(l.budget), false
	}
	return ProvisionalCapacity, false
}

// quantumLocked is the wire bytes one log may carry: Quantum of the capacity, at most a tenth
// of the smallest RPO target of the members.
func (l *Link) quantumLocked() int64 {
	q := l.cfg.Quantum
	for _, m := range l.members {
		if m.p.RPO > 0 {
			q = min(q, m.p.RPO/10)
		}
	}
	q = max(q, 100*time.Millisecond)
	c, known := l.capacityLocked()
	if !known && l.budget <= 0 {
		return ProvisionalLogBytes
	}
	return min(max(int64(c*q.Seconds()), MinLogBytes), MaxLogBytes)
}

// busyLocked is the total time at least one log was in flight.
func (l *Link) busyLocked(now time.Time) time.Duration {
	if l.inflight > 0 {
		return l.busyTotal + now.Sub(l.busySince)
	}
	return l.busyTotal
}

// key orders waiters and members: urgent first, then effective tier, deadline, arrival.
type key struct {
	urgent   bool
	tier     int
	deadline time.Time
	since    time.Time
	name     string
}

func (a key) less(b key) bool {
	if a.urgent != b.urgent {
		return a.urgent
	}
	if a.tier != b.tier {
		return a.tier < b.tier
	}
	if !a.deadline.Equal(b.deadline) {
		return a.deadline.Before(b.deadline)
	}
	if !a.since.Equal(b.since) {
		return a.since.Before(b.since)
	}
	return a.name < b.name
}

// deadlineLocked is when m's oldest unacknowledged change passes its target; oldest is used
// when the member reported none.
func (m *Member) deadlineLocked(oldest time.Time) time.Time {
	if !m.d.Oldest.IsZero() {
		oldest = m.d.Oldest
	}
	return oldest.Add(m.p.target())
}

// waiterKey is w's place in the order. Aging lowers the tier by one per Aging waited, down to
// 0, ahead of every tier: a request waits at most tier × Aging plus the logs in flight.
func (l *Link) waiterKey(w *waiter, now time.Time) key {
	tier := w.m.p.tier() - int(now.Sub(w.since)/l.cfg.Aging)
	return key{urgent: w.m.urgent, tier: max(tier, 0), deadline: w.m.deadlineLocked(w.since), since: w.since, name: w.m.name}
}

// dispatchLocked hands the link to waiters while it is free.
func (l *Link) dispatchLocked() {
	for !l.uploading && l.inflight < l.cfg.Slots && len(l.waiters) > 0 {
		now := l.cfg.Now()
		best := 0
		bk := l.waiterKey(l.waiters[0], now)
		for i := 1; i < len(l.waiters); i++ {
			if k := l.waiterKey(l.waiters[i], now); k.less(bk) {
				best, bk = i, k
			}
		}
		w := l.waiters[best]
		l.waiters = slices.Delete(l.waiters, best, best+1)
		q := l.quantumLocked()
		g := &Grant{l: l, m: w.m, start: now, maxWire: q, maxRaw: max(int64(float64(q)/w.m.ratio), MinLogBytes),
			saturated: len(l.waiters) > 0, shared: len(l.flying) > 0}
		for _, f := range l.flying {
			f.shared = true
		}
		l.flying = append(l.flying, g)
		if l.inflight == 0 {
			l.busySince = now
		}
		l.inflight++
		l.uploading = true
		w.m.lastGrant = now
		l.m.wait.WithLabelValues(l.cfg.Site, w.m.name).Observe(now.Sub(w.since).Seconds())
		w.ch <- g
	}
}

// Member is one volume's place on a link.
type Member struct {
	l      *Link
	name   string
	demand func() Demand

	// Under l.mu.
	p            Params
	left         bool
	urgent       bool
	ratio        float64 // wire bytes per raw byte, measured
	writeRate    float64 // raw bytes per second, measured
	lastAppended int64
	lastSample   time.Time
	d            Demand
	lastGrant    time.Time
	wireTotal    int64
	plan         plan
	risk         riskState
}

// plan is what the last planning gave a member and predicts for it.
type plan struct {
	share     float64       // wire bytes per second planned
	atRisk    bool          // predicted to pass its RPO target
	missIn    time.Duration // when (at risk)
	lagThen   time.Duration // predicted lag: at the next log (keeping up), one target from now (not)
	falling   bool          // the share is below the write rate: the backlog grows
	predicted bool          // a prediction was made (the member has an RPO target)
}

// riskState debounces the at-risk verdict: it is raised after two plans in a row say so and
// cleared after riskClear without.
type riskState struct {
	shown    bool
	seen     int
	okSince  time.Time
	lastWarn time.Time
	// missIn and lagThen are the last at-risk prediction, reported while shown.
	missIn, lagThen time.Duration
}

const riskClear = 10 * time.Second

// Name is the member's volume.
func (m *Member) Name() string { return m.name }

// Link is the link the member is on.
func (m *Member) Link() *Link { return m.l }

// SetParams changes the member's tier and targets (a reload).
func (m *Member) SetParams(p Params) {
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	m.p = p
}

// Leave removes the member; its waiting Acquire calls return ErrLeft.
func (m *Member) Leave() {
	l := m.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if m.left {
		return
	}
	m.left = true
	l.members = slices.DeleteFunc(l.members, func(x *Member) bool { return x == m })
	l.waiters = slices.DeleteFunc(l.waiters, func(w *waiter) bool {
		if w.m == m {
			close(w.ch)
			return true
		}
		return false
	})
	l.m.forget(l.cfg.Site, m.name)
	l.dispatchLocked()
}

// SetUrgent puts the member's requests ahead of every other member's while on (a planned
// failover draining its last log with guests paused), including a request already waiting.
func (m *Member) SetUrgent(on bool) {
	l := m.l
	l.mu.Lock()
	defer l.mu.Unlock()
	m.urgent = on
	l.dispatchLocked()
}

// Acquire waits until the member may send its next log. The grant must be ended with Done.
func (m *Member) Acquire(ctx context.Context) (*Grant, error) {
	l := m.l
	w := &waiter{m: m, since: l.cfg.Now(), ch: make(chan *Grant, 1)}
	l.mu.Lock()
	if m.left {
		l.mu.Unlock()
		return nil, ErrLeft
	}
	l.waiters = append(l.waiters, w)
	l.dispatchLocked()
	l.mu.Unlock()
	select {
	case g, ok := <-w.ch:
		if !ok {
			return nil, ErrLeft
		}
		return g, nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	n := len(l.waiters)
	l.waiters = slices.DeleteFunc(l.waiters, func(x *waiter) bool { return x == w })
	removed := len(l.waiters) < n
	l.mu.Unlock()
	if !removed {
		// Granted (or left) meanwhile: give the grant back.
		if g, ok := <-w.ch; ok {
			g.Done(0, 0, false, ctx.Err())
		}
	}
	return nil, ctx.Err()
}

// Quantum is the raw bytes a log of this member should carry now (a resync accumulates that
// much before it acquires the link).
func (m *Member) Quantum() int64 {
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	return max(int64(float64(m.l.quantumLocked())/m.ratio), MinLogBytes)
}

// Estimate is how long shipping raw bytes of this member would take now: the expected wait for
// the link (the backlog of members ahead of it, and the log in flight) plus the transfer.
func (m *Member) Estimate(raw int64) time.Duration {
	l := m.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	c, _ := l.capacityLocked()
	mk := m.memberKey(now)
	ahead := float64(raw) * m.ratio
	if l.uploading || l.inflight > 0 {
		ahead += float64(l.quantumLocked())
	}
	for _, o := range l.members {
		if o != m && o.memberKey(now).less(mk) {
			ahead += float64(o.d.Pending) * o.ratio
		}
	}
	return min(time.Duration(ahead/c*float64(time.Second)), 24*time.Hour)
}

func (m *Member) memberKey(now time.Time) key {
	return key{tier: m.p.tier(), deadline: m.deadlineLocked(now), name: m.name}
}

// Grant is the right to send one change log over the link.
type Grant struct {
	l         *Link
	m         *Member
	start     time.Time
	maxWire   int64
	maxRaw    int64
	saturated bool
	shared    bool // another log was in flight at some time of this one's (under l.mu)

	sent, done sync.Once
}

// MaxRaw is the most raw (uncompressed) bytes the log may carry; a log of one record may
// exceed it.
func (g *Grant) MaxRaw() int64 { return g.maxRaw }

// Pace waits until n more bytes may go on the wire under the link budget.
func (g *Grant) Pace(ctx context.Context, n int64) error {
	lim := g.l.lim
	for n > 0 {
		c := min(n, int64(max(lim.Burst(), 1)))
		if lim.Limit() == rate.Inf {
			return nil
		}
		if err := lim.WaitN(ctx, int(c)); err != nil {
			return err
		}
		n -= c
	}
	return nil
}

// Reader streams b paced to the link budget, and marks the upload finished once the last byte
// was read.
func (g *Grant) Reader(ctx context.Context, b []byte) io.Reader {
	return &pacedReader{g: g, ctx: ctx, b: b}
}

type pacedReader struct {
	g   *Grant
	ctx context.Context
	b   []byte
}

func (r *pacedReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		r.g.Sent()
		return 0, io.EOF
	}
	n := min(len(p), len(r.b), int(burstFor(max(r.g.l.Budget(), 1))))
	if err := r.g.Pace(r.ctx, int64(n)); err != nil {
		return 0, err
	}
	copy(p, r.b[:n])
	r.b = r.b[n:]
	if len(r.b) == 0 {
		r.g.Sent()
	}
	return n, nil
}

// Sent marks the log's upload finished: the next log may start while this one waits for its
// acknowledgement.
func (g *Grant) Sent() {
	g.sent.Do(func() {
		l := g.l
		l.mu.Lock()
		defer l.mu.Unlock()
		l.uploading = false
		l.dispatchLocked()
	})
}

// Done ends the grant: raw and wire bytes were acknowledged (err nil), full says the log was
// cut at MaxRaw (the member had more to send).
func (g *Grant) Done(raw, wire int64, full bool, err error) {
	g.Sent()
	g.done.Do(func() {
		l := g.l
		l.mu.Lock()
		defer l.mu.Unlock()
		now := l.cfg.Now()
		l.inflight--
		if l.inflight == 0 {
			l.busyTotal += now.Sub(l.busySince)
		}
		l.flying = slices.DeleteFunc(l.flying, func(f *Grant) bool { return f == g })
		// The busy time this log accounts for: since the previous one in flight ended, or
		// since it began; the logs in flight together split their time.
		seg := now.Sub(g.start)
		if l.lastDone.After(g.start) {
			seg = now.Sub(l.lastDone)
		}
		l.lastDone = now
		if err == nil && wire > 0 {
			m := g.m
			if raw > 0 {
				m.ratio = 0.7*m.ratio + 0.3*math.Max(float64(wire)/float64(raw), 0.01)
			}
			m.wireTotal += wire
			l.wireEvents = append(l.wireEvents, wireEvent{at: now, m: m, bytes: wire})
			// A short log measures latency more than bandwidth: only logs cut at their limit,
			// or large ones sent while others waited, say what the link can carry.
			l.measureLocked(wire, seg, full || (g.saturated && wire >= g.maxWire/2), g.shared)
		}
		l.dispatchLocked()
	})
}

// measureLocked adds an acknowledged log of wire bytes, accounting for seg of the busy time,
// to the capacity window, and takes a sample once the window spans measureWindow, if logs
// that filled the link (full) carried 80 % of its bytes. A short log alone on the link
// measures its latency, not its bandwidth: it is left out; one that shared the link with
// others is counted, or the others would be credited with its time.
func (l *Link) measureLocked(wire int64, seg time.Duration, full, shared bool) {
	if !full && !shared {
		return
	}
	l.win.bytes += wire
	l.win.busy += seg
	if full {
		l.win.satBytes += wire
	}
	if l.win.busy < measureWindow {
		return
	}
	if l.win.bytes >= MinLogBytes && l.win.satBytes*5 >= l.win.bytes*4 {
		sample := float64(l.win.bytes) / l.win.busy.Seconds()
		if l.measured == 0 {
			l.measured = sample
		} else {
			l.measured = 0.8*l.measured + 0.2*sample
		}
	}
	l.win = capWindow{}
}
