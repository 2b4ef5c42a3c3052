// Package shipper is the primary side of drfs replication: it cuts the journal into change
// logs on the operator's schedule (an interval, continuous, or an RPO target), coalesces and
// compresses them, sends them to the replica, and advances the acknowledged seq that lets the
// journal be released. It never blocks guest writes: when the replica is away for long, the
// journal is degraded to a dirty-extent map past --journal-max and those extents are resynced
// by block hash when the replica returns.
package shipper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"drfs/changelog"
	"drfs/journal"
	"drfs/volume"
	"drfs/wire"
)

// Metadata keys of the shipper's durable state, in the volume's metadata store.
const (
	keyNext     = volume.KeyShipNext // next seq to ship is this + 1 (journal kept from there)
	keySyncSeq  = "ship/sync_seq"    // seq+1: a full resync is pending; the replica becomes consistent at seq (0: none)
	keySyncBusy = "ship/sync_busy"   // seq+1: a repair resync is covered once the journal shipped past seq (0: none)
)

// Schedule says when cycles start.
type Schedule struct {
	Interval   time.Duration // fixed interval between cycle starts
	Continuous bool          // ship as soon as records exist, batching a few ms
	RPO        time.Duration // start cycles early enough to keep lag under this target
}

// ParseSchedule parses --interval (a Go duration or "continuous") and --rpo.
func ParseSchedule(interval string, rpo time.Duration) (Schedule, error) {
	switch {
	case rpo > 0 && interval != "":
		return Schedule{}, errors.New("use either --interval or --rpo, not both")
	case rpo > 0:
		if rpo < 100*time.Millisecond {
			return Schedule{}, fmt.Errorf("--rpo %s is too small: use at least 100ms, or --interval continuous", rpo)
		}
		return Schedule{RPO: rpo}, nil
	case interval == "continuous":
		return Schedule{Continuous: true}, nil
	case interval == "":
		return Schedule{Interval: 30 * time.Second}, nil
	}
	d, err := time.ParseDuration(interval)
	if err != nil || d <= 0 {
		return Schedule{}, fmt.Errorf("--interval %q: want a positive duration such as 30s or 5m, or \"continuous\"", interval)
	}
	return Schedule{Interval: d}, nil
}

func (s Schedule) String() string {
	switch {
	case s.Continuous:
		return "continuous"
	case s.RPO > 0:
		return "rpo " + s.RPO.String()
	}
	return "every " + s.Interval.String()
}

// Config configures a Shipper.
type Config struct {
	Volume      *volume.Volume
	Target      Target
	Schedule    Schedule
	BWLimit     int64 // bytes per second on the wire; 0 = unlimited
	JournalMax  int64 // journal bytes kept for an absent replica before degrading; 0 = unlimited
	MaxLogBytes int64 // raw bytes per change log (default 64 MiB)
	Logf        func(string, ...any)
	// Progress, if set, is called during a full sync with bytes done and total.
	Progress func(done, total int64)
	// OnDemoted, if set, is called once this side was durably demoted by a planned failover
	// (the mount is made read-only in the kernel too).
	OnDemoted func()
}

// Status is the replication part of `drfs status`.
type Status struct {
	Replica          string                `json:"replica"`
	Schedule         string                `json:"schedule"`
	Generation       uint64                `json:"generation"`
	AckedSeq         uint64                `json:"acked_seq"`
	LagSeconds       float64               `json:"lag_seconds"`
	PendingBytes     int64                 `json:"pending_bytes"`
	RPOTargetSeconds float64               `json:"rpo_target_seconds"`
	RPOViolations    int64                 `json:"rpo_violations"`
	LastError        string                `json:"last_error"`
	State            wire.ReplicationState `json:"replication_state"`
	SyncDoneBytes    int64                 `json:"sync_done_bytes"`
	SyncTotalBytes   int64                 `json:"sync_total_bytes"`
	Retries          int64                 `json:"retries"`
	// Failover is the phase of a planned failover: draining, promoting, in-doubt ("" when
	// none runs).
	Failover    string `json:"failover,omitempty"`
	FailoverKey string `json:"failover_key,omitempty"`
}

// Shipper replicates one volume to one target.
type Shipper struct {
	cfg Config
	vol *volume.Volume
	j   *journal.Journal
	t   Target
	m   *metrics

	next          atomic.Uint64 // every seq <= next was shipped (or folded into a pending resync)
	checkpointing atomic.Bool   // a checkpoint started by watch is running
	applied       atomic.Uint64 // replica's applied seq as last reported

	mu         sync.Mutex
	dirtySince time.Time
	lastErr    string
	state      wire.ReplicationState
	violating  bool
	violations int64
	retries    int64
	syncDone   int64
	syncTotal  int64
	rate       float64 // measured wire bytes per second (EWMA)
	degraded   bool    // journal folded into dirty extents; cleared when they are resynced
	demoted    bool    // a planned failover handed the primary role over
	failover   string  // phase of a planned failover, for Status
	applyErr   string  // the replica's last "cannot apply" answer

	// handOver is the planned failover whose outcome is open (mirrors the volume's record);
	// handOverSeen the last hand-over request of the replica acted on (under mu).
	handOver     atomic.Pointer[volume.HandOver]
	handOverSeen string
	applyErrs    atomic.Int64 // "cannot apply" answers of the replica
	foMu         sync.Mutex   // one planned failover or resolution at a time
	appendedAt   int64        // vol.AppendedBytes() when `next` was last advanced to the journal's end

	wake chan struct{}

	// opMu serialises everything that moves next: shipping a log, a resync pass and its
	// completion, planning a sync, degrading the journal. Without it a ship that began before
	// a degrade could move next back below records the degrade released.
	opMu sync.Mutex
}

// New returns a shipper; Run starts it.
func New(cfg Config) (*Shipper, error) {
	if cfg.MaxLogBytes <= 0 {
		cfg.MaxLogBytes = 64 << 20
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	s := &Shipper{cfg: cfg, vol: cfg.Volume, j: cfg.Volume.Journal(), t: cfg.Target, m: newMetrics(), state: wire.StateConnecting, rate: 10 << 20, wake: make(chan struct{}, 1)}
	next, err := s.vol.Meta().Uint(keyNext)
	if err != nil {
		return nil, err
	}
	s.next.Store(next)
	s.applied.Store(next)
	if et, ok := cfg.Target.(*exportTarget); ok && et.st.VolumeID == "" {
		// A new export directory continues from what this primary last shipped (after a
		// seed export, the seed's seq).
		et.st = wire.State{VolumeID: s.vol.ID(), Name: s.vol.Name(), Generation: s.vol.Generation(), Applied: next, Consistent: true}
	}
	s.appendedAt = s.vol.AppendedBytes()
	s.vol.SetRetention(func() journal.Seq { return journal.Seq(s.next.Load() + 1) })
	s.vol.OnJournalFull(func() {
		if uint64(s.j.LastSeq()) > s.next.Load() {
			s.tryDegrade()
		}
	})
	if err := s.vol.Meta().SetString(volume.KeyReplica, cfg.Target.String()); err != nil {
		return nil, err
	}
	if err := s.loadHandOver(); err != nil {
		return nil, err
	}
	return s, nil
}

// Status returns the current replication status.
func (s *Shipper) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		Replica: s.t.String(), Schedule: s.cfg.Schedule.String(), Generation: s.vol.Generation(),
		AckedSeq: s.applied.Load(), LagSeconds: s.lagLocked(time.Now()).Seconds(),
		PendingBytes: max(s.vol.AppendedBytes()-s.appendedAt, 0), RPOTargetSeconds: s.cfg.Schedule.RPO.Seconds(),
		RPOViolations: s.violations, LastError: s.lastErr, State: s.state,
		SyncDoneBytes: s.syncDone, SyncTotalBytes: s.syncTotal, Retries: s.retries,
	}
	if uint64(s.j.LastSeq()) <= st.AckedSeq {
		st.PendingBytes = 0
	}
	if s.degraded && (st.State == wire.StateConnecting || st.State == wire.StateDisconnected) {
		st.State = wire.StateDegraded
	}
	if s.demoted {
		st.State = wire.StateDemoted
	}
	st.Failover = s.failover
	if h := s.handOver.Load(); h != nil {
		st.FailoverKey = h.Key
	}
	return st
}

func (s *Shipper) lagLocked(now time.Time) time.Duration {
	if s.dirtySince.IsZero() {
		return 0
	}
	return now.Sub(s.dirtySince)
}

func (s *Shipper) setState(st wire.ReplicationState) {
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
}

func (s *Shipper) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.lastErr = ""
		return
	}
	s.lastErr = time.Now().UTC().Format(time.RFC3339) + " " + err.Error()
}

// Kick starts a cycle now (used by tests and planned operations).
func (s *Shipper) Kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// ErrFenced means the replica belongs to a newer generation: this primary was superseded.
var ErrFenced = errors.New("shipper: fenced")

// Run replicates until ctx is done or the primary is fenced. Transient failures are retried
// with backoff; the guest never waits for any of it.
func (s *Shipper) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.watch(ctx) }()
	defer wg.Wait()
	backoff := minBackoff
	for ctx.Err() == nil {
		if s.inDoubt() {
			s.resolveLoop(ctx)
			if ctx.Err() != nil || s.isDemoted() {
				return nil
			}
		}
		err := s.session(ctx)
		if ctx.Err() != nil || s.isDemoted() {
			return nil
		}
		if s.inDoubt() {
			continue
		}
		if errors.Is(err, ErrFenced) {
			s.setState(wire.StateFenced)
			s.setErr(err)
			s.cfg.Logf("replication stopped: %v", err)
			return err
		}
		s.setErr(err)
		s.setState(wire.StateDisconnected)
		s.mu.Lock()
		s.retries++
		s.mu.Unlock()
		s.m.retries.Inc()
		s.cfg.Logf("replication to %s: %v (retrying in %s)", s.t, err, backoff)
		s.backoff(ctx, backoff)
		backoff = min(backoff*2, 30*time.Second)
		if err == nil {
			backoff = minBackoff
		}
	}
	return nil
}

// minBackoff is the shortest wait between two failed sessions, however often the shipper is
// kicked (drfs sync and a failover's drain kick it every few milliseconds).
const minBackoff = 200 * time.Millisecond

// backoff waits d before the next session, or less (minBackoff at least) if kicked; meanwhile
// it keeps looking for a hand-over request of the replica, which a primary that cannot ship
// must still answer.
func (s *Shipper) backoff(ctx context.Context, d time.Duration) {
	start := time.Now()
	wait := time.NewTimer(d)
	defer wait.Stop()
	beat := time.NewTicker(heartbeatEvery)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
			return
		case <-s.wake:
			left := minBackoff - time.Since(start)
			if left <= 0 {
				return
			}
			wait.Reset(min(left, d))
		case <-beat.C:
			if st, err := s.t.State(ctx); err == nil {
				s.handOverRequested(st)
			}
		}
	}
}

// session connects to the replica, reconciles where it stands, then runs cycles until an
// error.
func (s *Shipper) session(ctx context.Context) error {
	s.setState(wire.StateConnecting)
	st, err := s.t.State(ctx)
	if err != nil {
		return fmt.Errorf("contact replica: %w", err)
	}
	gen := s.vol.Generation()
	switch {
	case st.VolumeID != "" && st.VolumeID != s.vol.ID():
		return fmt.Errorf("%w: the replica holds volume %s, not %s (%s): point --replica at another directory or volume name", ErrFenced, st.VolumeID, s.vol.ID(), s.vol.Name())
	case st.Generation > gen || st.Role == wire.RolePromoted:
		return fmt.Errorf("%w: %s", ErrFenced, promotionText(st, gen))
	}
	last := uint64(s.j.LastSeq())
	syncPending, _ := s.vol.Meta().Uint(keySyncSeq)
	switch {
	case st.VolumeID == "" || (!st.Consistent && syncPending == 0 && st.Applied == 0):
		s.cfg.Logf("replica %s holds no copy of volume %s: starting the initial sync", s.t, s.vol.Name())
		if err := s.planFullSync("initial sync"); err != nil {
			return err
		}
	case st.Generation < gen && (len(st.Diverged) > 0 || st.Applied != s.next.Load()):
		// The replica is the old primary of an earlier generation, reversed: compare only
		// the extents either side changed since the common point.
		if err := s.planReverse(st); err != nil {
			return err
		}
	case st.Applied > last:
		return fmt.Errorf("%w: the replica has applied seq %d but this journal ends at %d: the two sides diverged (split brain?): promote one side and reverse the other", ErrFenced, st.Applied, last)
	case syncPending == 0 && st.Applied != s.next.Load():
		first := uint64(s.j.FirstSeq())
		if st.Applied+1 >= first || first == 0 {
			s.cfg.Logf("replica is at seq %d, resuming from there", st.Applied)
			s.opMu.Lock()
			s.next.Store(st.Applied)
			s.opMu.Unlock()
		} else {
			s.cfg.Logf("replica is at seq %d but the journal starts at %d: resyncing by block hash", st.Applied, first)
			if err := s.planFullSync("journal no longer covers the replica's seq"); err != nil {
				return err
			}
		}
	}
	s.applied.Store(st.Applied)
	s.setErr(nil)
	return s.cycles(ctx)
}

// promotionText explains why a replica refuses this primary.
func promotionText(st wire.State, gen uint64) string {
	if n := len(st.History); n > 0 {
		h := st.History[n-1]
		forced := ""
		if h.Forced {
			forced = " (forced)"
		}
		return fmt.Sprintf("volume %s was promoted%s to generation %d on %s at %s, from seq %d; this primary is at generation %d and must not ship any more",
			st.Name, forced, h.Generation, h.Host, h.Time.Format(time.RFC3339), h.StartSeq-1, gen)
	}
	return fmt.Sprintf("the replica is at generation %d, this primary at %d: it was promoted, and this site must not ship any more", st.Generation, gen)
}

// planReverse plans the catch-up of a reversed old primary: the extents it changed after the
// common point (it reports them), the extents this side rolled back at promotion (already
// pending here) and the extents this side changed since (from the journal) are compared block
// by block; the replica is then exactly at the barrier seq and journal logs continue after it.
func (s *Shipper) planReverse(st wire.State) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	seq := uint64(s.vol.Barrier())
	mine, err := s.vol.ExtentsSince(journal.Seq(s.next.Load()+1), journal.Seq(seq), "changed on the new primary since the promotion")
	if err != nil {
		return fmt.Errorf("extents since the promotion: %w", err)
	}
	exts := append(mine, st.Diverged...)
	s.cfg.Logf("replica is the reversed old primary (generation %d, applied seq %d, %d diverged extents): resyncing %d extents", st.Generation, st.Applied, len(st.Diverged), len(exts))
	return s.pendSync(exts, seq)
}

// pendSync records that exts must be resynced and the replica then declared exactly at seq;
// the journal is shipped from seq+1 afterwards.
func (s *Shipper) pendSync(exts []volume.Extent, seq uint64) error {
	if err := s.vol.Meta().AddResync(exts); err != nil {
		return err
	}
	if err := s.vol.Meta().SetUint(keySyncSeq, seq+1); err != nil {
		return err
	}
	if err := s.vol.Meta().SetUint(keyNext, seq); err != nil {
		return err
	}
	s.next.Store(seq)
	s.mu.Lock()
	s.appendedAt = s.vol.AppendedBytes()
	s.mu.Unlock()
	return nil
}

// planFullSync records that the whole tree must be resynced and the replica declared
// consistent at the current barrier seq.
func (s *Shipper) planFullSync(reason string) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.planFullSyncLocked(reason)
}

// planFullSyncLocked is planFullSync for a caller that holds opMu.
func (s *Shipper) planFullSyncLocked(reason string) error {
	seq := uint64(s.vol.Barrier())
	return s.pendSync([]volume.Extent{{Path: ".", Len: -1, Reason: reason}}, seq)
}

func (s *Shipper) isDemoted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.demoted
}

func (s *Shipper) cycles(ctx context.Context) error {
	gen := s.vol.Generation()
	lastCycle := time.Time{}
	for ctx.Err() == nil && !s.isDemoted() && !s.inDoubt() {
		if err := s.resyncAndComplete(ctx, gen); err != nil {
			return err
		}
		if !s.isDemoted() {
			s.setState(wire.StateReplicating)
		}
		if err := s.waitCycle(ctx, lastCycle); err != nil {
			return nil
		}
		lastCycle = time.Now()
		if err := s.shipAll(ctx); err != nil {
			return err
		}
	}
	return nil
}

// resyncAndComplete runs a pending resync pass, then tells the replica where it stands: at
// the pending full-sync seq (or its applied seq for a repair), with journal logs up to the
// barrier taken after the pass applied tolerantly, since the pass copied a state at least that
// new.
func (s *Shipper) resyncAndComplete(ctx context.Context, gen uint64) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	busy, _ := s.vol.Meta().Uint(keySyncBusy)
	if !s.vol.ResyncPending() && busy == 0 {
		return nil
	}
	if err := s.vol.Meta().SetUint(keySyncBusy, 1); err != nil {
		return err
	}
	if err := s.resync(ctx); err != nil {
		return err
	}
	end := uint64(s.vol.Barrier())
	seq := s.applied.Load()
	full, _ := s.vol.Meta().Uint(keySyncSeq)
	if full > 0 {
		seq = full - 1
	}
	if err := s.t.SyncComplete(ctx, s.vol.ID(), gen, seq, end, full > 0); err != nil {
		return fmt.Errorf("complete resync: %w", err)
	}
	s.vol.Meta().SetUint(keySyncSeq, 0)
	s.vol.Meta().SetUint(keySyncBusy, 0)
	s.mu.Lock()
	s.degraded = false
	s.mu.Unlock()
	if seq > s.applied.Load() {
		s.applied.Store(seq)
	}
	s.cfg.Logf("resync complete: replica at seq %d, consistent once it applied seq %d", seq, end)
	return nil
}

// heartbeatEvery is how often an idle primary asks the replica for its state: it keeps the
// replica's notion of "the primary is alive" fresh and lets it ask for a hand-over.
const heartbeatEvery = time.Second

// heartbeat fetches the replica's state; a hand-over request starts a planned failover, once
// per request.
func (s *Shipper) heartbeat(ctx context.Context) error {
	st, err := s.t.State(ctx)
	if err != nil {
		return fmt.Errorf("contact replica: %w", err)
	}
	s.handOverRequested(st)
	return nil
}

// waitCycle blocks until the schedule says a cycle should start.
func (s *Shipper) waitCycle(ctx context.Context, last time.Time) error {
	sch := s.cfg.Schedule
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	lastBeat := time.Now()
	for {
		if time.Since(lastBeat) >= heartbeatEvery {
			lastBeat = time.Now()
			if err := s.heartbeat(ctx); err != nil {
				s.setErr(err)
			}
		}
		pending := uint64(s.j.LastSeq()) > s.next.Load() || s.vol.ResyncPending()
		switch {
		case sch.Continuous:
			if pending {
				// Batch a few milliseconds of writes into one log: each log costs the
				// replica an undo file, a sync and a recovery point.
				time.Sleep(10 * time.Millisecond)
				return nil
			}
		case sch.RPO > 0:
			if pending {
				s.mu.Lock()
				lag := s.lagLocked(time.Now())
				est := time.Duration(float64(s.vol.AppendedBytes()-s.appendedAt) / s.rate * float64(time.Second))
				s.mu.Unlock()
				// Leave half of the target as margin for the transfer estimate's error.
				if lag+est >= sch.RPO/2 {
					return nil
				}
			}
		default:
			if pending && time.Since(last) >= sch.Interval {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
			if pending {
				return nil
			}
		case <-tick.C:
		}
	}
}

// shipAll ships change logs until the journal end seen at the start of the cycle.
func (s *Shipper) shipAll(ctx context.Context) error {
	end := uint64(s.j.LastSeq())
	for s.next.Load() < end {
		if err := s.shipOne(ctx, end); err != nil {
			return err
		}
	}
	return nil
}

// shipOne sends one change log starting at next+1 and ending at most at end.
func (s *Shipper) shipOne(ctx context.Context, end uint64) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	t0 := time.Now()
	appendedAtCut := s.vol.AppendedBytes()
	from := s.next.Load() + 1
	// Only durable records leave the site: a record the primary could still lose must never
	// reach the replica, or the two would diverge after a power loss here.
	if err := s.j.Sync(journal.Seq(end)); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	var ops []journal.Op
	var raw int64
	to := from - 1
	stop := errors.New("full")
	err := s.j.Read(journal.Seq(from), journal.Seq(end), func(r journal.Record) error {
		if raw >= s.cfg.MaxLogBytes {
			return stop
		}
		to = uint64(r.Seq)
		if r.Type == journal.RecHot {
			return nil
		}
		op, err := journal.DecodeOp(r.Type, r.Payload)
		if err != nil {
			return fmt.Errorf("seq %d: %w", r.Seq, err)
		}
		raw += int64(len(r.Payload))
		ops = append(ops, op)
		if w, ok := op.(journal.OpWrite); ok {
			// Payload memory is only valid during the callback.
			w.Data = append([]byte(nil), w.Data...)
			ops[len(ops)-1] = w
		}
		return nil
	})
	if err != nil && !errors.Is(err, stop) {
		return fmt.Errorf("read journal %d-%d: %w", from, end, err)
	}
	if to < from {
		return nil
	}
	l := &changelog.Log{
		Header: changelog.Header{Kind: changelog.KindJournal, VolumeID: s.vol.ID(), Generation: s.vol.Generation(), FromSeq: from, ToSeq: to, Created: t0.UTC()},
		Ops:    changelog.Coalesce(ops),
	}
	b, stats, err := changelog.Marshal(l)
	if err != nil {
		return fmt.Errorf("encode change log: %w", err)
	}
	s.throttle(ctx, int64(len(b)))
	tSend := time.Now()
	applied, err := s.t.Send(ctx, b)
	var ref *RefusedError
	if errors.As(err, &ref) {
		switch ref.Code {
		case wire.CodeGap:
			s.cfg.Logf("replica is at seq %d (log %d-%d refused as a gap): resending from there", ref.Applied, from, to)
			return s.realign(ref.Applied)
		case wire.CodeStale, wire.CodeVolume:
			return fmt.Errorf("%w: %s", ErrFenced, ref.Msg)
		case wire.CodeBadLog:
			s.m.corrupt.Inc()
			return fmt.Errorf("replica could not decode log %d-%d (corrupted in transit?): %s", from, to, ref.Msg)
		}
		return err
	}
	if err != nil {
		if errors.Is(err, ErrReplicaApply) {
			s.mu.Lock()
			s.applyErr = err.Error()
			s.mu.Unlock()
			s.applyErrs.Add(1)
		}
		return fmt.Errorf("send log %d-%d: %w", from, to, err)
	}
	if err := s.vol.Meta().SetUint(keyNext, to); err != nil {
		return err
	}
	s.next.Store(to)
	s.applied.Store(applied)
	now := time.Now()
	s.mu.Lock()
	if d := now.Sub(tSend).Seconds(); d > 0 {
		s.rate = 0.7*s.rate + 0.3*float64(len(b))/d
	}
	if uint64(s.j.LastSeq()) == to {
		s.dirtySince = time.Time{}
		s.appendedAt = appendedAtCut
	} else if to == end {
		s.dirtySince = t0
		s.appendedAt = appendedAtCut
	}
	s.mu.Unlock()
	s.m.logs.Inc()
	s.m.rawBytes.Add(float64(stats.RawBytes))
	s.m.wireBytes.Add(float64(len(b)))
	s.m.cycleDur.Observe(now.Sub(t0).Seconds())
	s.m.ackedSeq.Set(float64(to))
	s.vol.ReleaseJournal()
	return nil
}

// realign moves next back (or forward) to what the replica has applied, if the journal still
// holds the records after it.
func (s *Shipper) realign(applied uint64) error {
	first := uint64(s.j.FirstSeq())
	if applied+1 < first && first != 0 {
		return s.planFullSyncLocked("journal no longer covers the replica's seq")
	}
	if applied > uint64(s.j.LastSeq()) {
		return fmt.Errorf("%w: the replica has applied seq %d beyond this journal's end", ErrFenced, applied)
	}
	s.next.Store(applied)
	s.applied.Store(applied)
	return s.vol.Meta().SetUint(keyNext, applied)
}

// throttle sleeps so that the wire rate stays under BWLimit.
func (s *Shipper) throttle(ctx context.Context, n int64) {
	if s.cfg.BWLimit <= 0 {
		return
	}
	d := time.Duration(float64(n) / float64(s.cfg.BWLimit) * float64(time.Second))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// watch runs beside the sessions, whether the replica is reachable or not: it tracks lag, counts
// RPO violations and degrades the journal to a dirty-extent map past JournalMax.
func (s *Shipper) watch(ctx context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		dirty := uint64(s.j.LastSeq()) > s.applied.Load()
		s.mu.Lock()
		if dirty && s.dirtySince.IsZero() {
			s.dirtySince = now
		}
		if !dirty {
			s.dirtySince = time.Time{}
		}
		lag := s.lagLocked(now)
		if rpo := s.cfg.Schedule.RPO; rpo > 0 {
			if lag > rpo && !s.violating {
				s.violating = true
				s.violations++
				s.m.rpoViolations.Inc()
				s.cfg.Logf("RPO target %s missed: replica lag is %s", rpo, lag.Round(time.Millisecond))
			} else if lag <= rpo {
				s.violating = false
			}
		}
		s.mu.Unlock()
		s.m.lag.Set(lag.Seconds())
		if s.cfg.JournalMax > 0 && uint64(s.j.LastSeq()) > s.next.Load() &&
			s.j.UsedFrom(journal.Seq(s.next.Load()+1)) > s.cfg.JournalMax {
			s.tryDegrade()
		}
		// Shipped records leave the journal at the next checkpoint; with a journal limit, do
		// not wait for the periodic one.
		if s.cfg.JournalMax > 0 && s.j.Size() > s.cfg.JournalMax && s.vol.CheckpointSeq() < s.next.Load() &&
			s.checkpointing.CompareAndSwap(false, true) {
			go func() {
				defer s.checkpointing.Store(false)
				if err := s.vol.Checkpoint(); err != nil {
					s.cfg.Logf("checkpoint: %v", err)
				}
			}()
		}
	}
}

// tryDegrade degrades the journal unless a ship or resync is under way (the caller must not
// wait: it tracks lag, or it is a guest's write); it is tried again on the next occasion.
func (s *Shipper) tryDegrade() {
	if !s.opMu.TryLock() {
		return
	}
	defer s.opMu.Unlock()
	if err := s.degrade(); err != nil {
		s.cfg.Logf("degrade journal: %v", err)
	}
}

// degrade folds the unshipped journal records into resync extents (metadata only), so the
// journal can be released while the replica is away. When the replica returns, only those
// extents travel, compared block by block. The caller holds opMu.
func (s *Shipper) degrade() error {
	seq := uint64(s.vol.Barrier())
	from := s.next.Load() + 1
	if seq < from {
		return nil
	}
	list, err := s.vol.ExtentsSince(journal.Seq(from), journal.Seq(seq), "journal over --journal-max while the replica was away")
	if err != nil {
		return err
	}
	// The replica stays at its applied seq; once the extents are resynced it is declared
	// consistent at seq.
	if err := s.pendSync(list, seq); err != nil {
		return err
	}
	s.mu.Lock()
	s.degraded = true
	s.mu.Unlock()
	s.m.degraded.Inc()
	s.cfg.Logf("journal passed --journal-max with the replica away: records %d-%d folded into %d dirty extents", from, seq, len(list))
	// A checkpoint makes the folded records unnecessary for local recovery too, and releases them.
	return s.vol.Checkpoint()
}

// SyncNow starts a cycle at once and waits until the replica has acknowledged every record
// journaled before the call. It returns the acknowledged seq.
func (s *Shipper) SyncNow(ctx context.Context) (uint64, error) {
	target := uint64(s.j.LastSeq())
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if a := s.applied.Load(); a >= target && !s.vol.ResyncPending() {
			return a, nil
		}
		s.mu.Lock()
		state, lastErr := s.state, s.lastErr
		s.mu.Unlock()
		if state == wire.StateFenced {
			return s.applied.Load(), fmt.Errorf("%w: %s", ErrFenced, lastErr)
		}
		s.Kick()
		select {
		case <-ctx.Done():
			return s.applied.Load(), fmt.Errorf("replica at seq %d, waiting for %d: %w (last error: %s)", s.applied.Load(), target, ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}
