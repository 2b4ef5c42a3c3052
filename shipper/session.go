package shipper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"drfs/internal/logging"
	"drfs/journal"
	"drfs/volume"
	"drfs/wire"
)

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
			s.log.Warn("replication stopped", logging.Err(err))
			return err
		}
		s.setErr(err)
		s.setState(wire.StateDisconnected)
		s.mu.Lock()
		s.retries++
		s.mu.Unlock()
		s.m.retries.Inc()
		s.log.Warn("replication failed", logging.Err(err), "retry_in", backoff)
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
		s.log.Info("replica holds no copy of the volume: starting the initial sync")
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
			s.log.Info("resuming from the replica's seq", "seq", st.Applied)
			s.opMu.Lock()
			s.next.Store(st.Applied)
			s.reanchor()
			s.opMu.Unlock()
		} else {
			s.log.Info("replica is behind the journal's start: resyncing by block hash", "seq", st.Applied, "journal_first", first)
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
	s.log.Info("replica is the reversed old primary: resyncing its diverged extents", "generation", st.Generation, "seq", st.Applied, "diverged", len(st.Diverged), "extents", len(exts))
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
	s.shippedMark = s.vol.AppendedBytes()
	s.markLocked(seq)
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

// resyncOutstanding reports whether a resync pass has work left or has not yet been completed
// on the replica (sync-complete): until then the replica is not at a seq.
func (s *Shipper) resyncOutstanding() bool {
	if s.vol.ResyncPending() {
		return true
	}
	busy, _ := s.vol.Meta().Uint(keySyncBusy)
	return busy != 0
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
	// The replica applies logs up to end tolerantly: end must be durable here (see flush).
	if err := s.j.Sync(journal.Seq(end)); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
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
	s.log.Info("resync complete", "seq", seq, "consistent_at", end)
	return nil
}
