// Package shipper is the primary side of drfs replication: it cuts the journal into change
// logs on the operator's schedule (an interval, continuous, or an RPO target), coalesces and
// compresses them, sends them to the replica, and advances the acknowledged seq that lets the
// journal be released. It never blocks guest writes: when the replica is away for long, the
// journal is degraded to a dirty-extent map past --journal-max and those extents are resynced
// by block hash when the replica returns.
package shipper

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"drfs/internal/logging"
	"drfs/journal"
	"drfs/link"
	"drfs/volume"
	"drfs/wire"
)

// Metadata keys of the shipper's durable state, in the volume's metadata store (defined and
// described with every other key in package volume).
const (
	keyNext     = volume.KeyShipNext
	keySyncSeq  = volume.KeyShipSyncSeq
	keySyncBusy = volume.KeyShipSyncBusy
)

// Config configures a Shipper.
type Config struct {
	Volume      *volume.Volume
	Target      Target
	Schedule    Schedule
	JournalMax  int64 // journal bytes kept for an absent replica before degrading; 0 = unlimited
	MaxLogBytes int64 // raw bytes per change log (default 64 MiB)
	// Link is the replica site's link, shared with the other volumes replicating there: it
	// decides which volume's log goes next and how big it may be. Nil: the shipper has a
	// link of its own, with BWLimit as its budget.
	Link    *link.Link
	BWLimit int64 // budget of the shipper's own link, bytes per second on the wire; 0 = none
	Tier    int   // 1 (most important) .. 9 (0 is 9), the volume's place on a shared link
	// Logger receives the shipper's messages (with volume and replica attributes added); nil
	// discards them.
	Logger *slog.Logger
	// Progress, if set, is called during a full sync with bytes done and total.
	Progress func(done, total int64)
	// OnDemoted, if set, is called once this side was durably demoted by a planned failover
	// (the mount is made read-only in the kernel too).
	OnDemoted func()
	// Now is the clock replication lag is measured with (RPO schedule, violations, status);
	// nil: time.Now. Tests set it to make lag deterministic.
	Now func() time.Time
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
	// Link is the volume's place on the replica site's link: tier, deadline, share and
	// whether it is predicted to miss its RPO target.
	Link *link.MemberStatus `json:"link,omitempty"`
}

// Shipper replicates one volume to one target.
type Shipper struct {
	cfg Config
	log *slog.Logger
	vol *volume.Volume
	j   *journal.Journal
	t   Target
	m   *metrics

	member  *link.Member
	ownLink *link.Link // the link the shipper made for itself (no shared one), closed by Close

	next          atomic.Uint64 // every seq <= next was shipped (or folded into a pending resync)
	checkpointing atomic.Bool   // a checkpoint started by watch is running
	applied       atomic.Uint64 // replica's applied seq as last reported

	mu         sync.Mutex
	clock      appendClock // when the journal grew past which seq: the lag of what is unacknowledged
	schedule   Schedule
	journalMax int64
	dirtySince time.Time
	lastErr    string
	state      wire.ReplicationState
	violating  bool
	violations int64
	retries    int64
	syncDone   int64
	syncTotal  int64
	degraded   bool   // journal folded into dirty extents; cleared when they are resynced
	demoted    bool   // a planned failover handed the primary role over
	failover   string // phase of a planned failover, for Status
	applyErr   string // the replica's last "cannot apply" answer

	// handOver is the planned failover whose outcome is open (mirrors the volume's record);
	// handOverSeen the last hand-over request of the replica acted on (under mu).
	handOver     atomic.Pointer[volume.HandOver]
	handOverSeen string
	applyErrs    atomic.Int64 // "cannot apply" answers of the replica
	foMu         sync.Mutex   // one planned failover or resolution at a time
	// shippedMark is the vol.AppendedBytes() count of the records up to next: what is appended
	// beyond it is pending. Exact while shipping; estimated from the journal's segments when
	// next moves otherwise (opening, resuming from the replica's seq).
	shippedMark int64
	marks       []logMark // shippedMark at recent log boundaries

	wake chan struct{}

	// opMu serialises everything that moves next: shipping a log, a resync pass and its
	// completion, planning a sync, degrading the journal. Without it a ship that began before
	// a degrade could move next back below records the degrade released.
	opMu sync.Mutex
}

// New returns a shipper; Run starts it, Close ends it.
func New(cfg Config) (*Shipper, error) {
	if cfg.MaxLogBytes <= 0 {
		cfg.MaxLogBytes = 64 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := logging.OrDiscard(cfg.Logger).With("volume", cfg.Volume.Name(), "replica", cfg.Target.String())
	s := &Shipper{cfg: cfg, log: log, vol: cfg.Volume, j: cfg.Volume.Journal(), t: cfg.Target, m: newMetrics(), state: wire.StateConnecting,
		schedule: cfg.Schedule, journalMax: cfg.JournalMax, wake: make(chan struct{}, 1)}
	next, err := s.vol.Meta().Uint(keyNext)
	if err != nil {
		return nil, err
	}
	s.next.Store(next)
	s.applied.Store(next)
	// Records after next were appended before now: their age counts from here.
	s.clock.observe(cfg.Now(), next)
	if et, ok := cfg.Target.(*exportTarget); ok && et.st.VolumeID == "" {
		// A new export directory continues from what this primary last shipped (after a
		// seed export, the seed's seq).
		et.st = wire.State{VolumeID: s.vol.ID(), Name: s.vol.Name(), Generation: s.vol.Generation(), Applied: next, Consistent: true}
	}
	s.reanchor()
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
	l := cfg.Link
	if l == nil {
		s.ownLink = link.New(link.Config{Site: cfg.Target.String(), Budget: cfg.BWLimit, Logger: cfg.Logger, Now: cfg.Now})
		l = s.ownLink
	}
	s.member = l.Join(s.vol.Name(), linkParams(cfg.Schedule, cfg.Tier), s.demand)
	return s, nil
}

// Close takes the shipper off its link; call it once Run returned.
func (s *Shipper) Close() {
	s.member.Leave()
	if s.ownLink != nil {
		s.ownLink.Close()
	}
}

func linkParams(sch Schedule, tier int) link.Params {
	p := link.Params{Tier: tier, RPO: sch.RPO}
	if !sch.Continuous && sch.RPO == 0 {
		p.Interval = sch.Interval
	}
	return p
}

// SetSchedule changes the schedule, the tier and the journal limit of a running shipper (a
// configuration reload): the next cycle follows them; the connection to the replica stays.
func (s *Shipper) SetSchedule(sch Schedule, tier int, journalMax int64) {
	s.mu.Lock()
	s.schedule, s.journalMax = sch, journalMax
	s.mu.Unlock()
	s.member.SetParams(linkParams(sch, tier))
	s.Kick()
}

// sched returns the current schedule and journal limit.
func (s *Shipper) sched() (Schedule, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.schedule, s.journalMax
}

// demand is what the link samples of this volume's backlog.
func (s *Shipper) demand() link.Demand {
	st := s.status()
	d := link.Demand{Pending: st.PendingBytes, Appended: s.vol.AppendedBytes()}
	if left := st.SyncTotalBytes - st.SyncDoneBytes; st.State == wire.StateSyncing && left > 0 {
		d.Pending += left
	}
	s.mu.Lock()
	d.Oldest = s.dirtySince
	s.mu.Unlock()
	return d
}

// pendingLocked is the raw bytes journaled and not shipped.
func (s *Shipper) pendingLocked() int64 {
	if uint64(s.j.LastSeq()) <= s.next.Load() {
		return 0
	}
	return max(s.vol.AppendedBytes()-s.shippedMark, 0)
}

// reanchor sets shippedMark after next moved other than by shipping (opening, resuming from
// the replica's seq, a gap): exactly, when next is a log boundary this shipper remembers (a log
// sent again after its acknowledgement was lost), otherwise estimated from the journal bytes
// after next, counted by whole segments.
func (s *Shipper) reanchor() {
	n := s.next.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.marks) - 1; i >= 0; i-- {
		if s.marks[i].seq == n {
			s.shippedMark = s.marks[i].mark
			return
		}
	}
	pending := int64(0)
	if uint64(s.j.LastSeq()) > n {
		pending = s.j.UsedFrom(journal.Seq(n + 1))
	}
	s.shippedMark = s.vol.AppendedBytes() - pending
}

// markLocked remembers shippedMark at log boundary seq, for reanchor.
func (s *Shipper) markLocked(seq uint64) {
	if len(s.marks) == maxMarks {
		s.marks = append(s.marks[:0], s.marks[maxMarks/2:]...)
	}
	s.marks = append(s.marks, logMark{seq, s.shippedMark})
}

// logMark is shippedMark at a log boundary.
type logMark struct {
	seq  uint64
	mark int64
}

// maxMarks bounds the log boundaries remembered.
const maxMarks = 256

// Member is the shipper's place on its link.
func (s *Shipper) Member() *link.Member { return s.member }

// Status returns the current replication status.
func (s *Shipper) Status() Status {
	st := s.status()
	ms := s.member.Status()
	st.Link = &ms
	return st
}

// status is Status without the link's part.
func (s *Shipper) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		Replica: s.t.String(), Schedule: s.schedule.String(), Generation: s.vol.Generation(),
		AckedSeq: s.applied.Load(), LagSeconds: s.lagLocked(s.cfg.Now()).Seconds(),
		PendingBytes: s.pendingLocked(), RPOTargetSeconds: s.schedule.RPO.Seconds(),
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

func (s *Shipper) isDemoted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.demoted
}
