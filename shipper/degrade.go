package shipper

import (
	"context"
	"time"

	"drfs/internal/logging"
	"drfs/journal"
)

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
		now := s.cfg.Now()
		s.mu.Lock()
		s.trackLagLocked()
		lag := s.lagLocked(now)
		jmax := s.journalMax
		if rpo := s.schedule.RPO; rpo > 0 {
			if lag > rpo && !s.violating {
				s.violating = true
				s.violations++
				s.m.rpoViolations.Inc()
				s.log.Warn("RPO target missed", "rpo", rpo, "lag", lag.Round(time.Millisecond))
			} else if lag <= rpo {
				s.violating = false
			}
		}
		s.mu.Unlock()
		s.m.lag.Set(lag.Seconds())
		if jmax > 0 && uint64(s.j.LastSeq()) > s.next.Load() &&
			s.j.UsedFrom(journal.Seq(s.next.Load()+1)) > jmax {
			s.tryDegrade()
		}
		// Shipped records leave the journal at the next checkpoint; with a journal limit, do
		// not wait for the periodic one.
		if jmax > 0 && s.j.Size() > jmax && s.vol.CheckpointSeq() < s.next.Load() &&
			s.checkpointing.CompareAndSwap(false, true) {
			go func() {
				defer s.checkpointing.Store(false)
				if err := s.vol.Checkpoint(); err != nil {
					s.log.Warn("checkpoint", logging.Err(err))
				}
			}()
		}
	}
}

// trackLagLocked samples the journal's end and sets dirtySince to when the oldest record the
// replica has not acknowledged was appended (zero when there is none). Called by watch every
// tick and at every acknowledgement, so the lag drops as soon as a log lands.
func (s *Shipper) trackLagLocked() {
	last, acked := uint64(s.j.LastSeq()), s.applied.Load()
	s.clock.observe(s.cfg.Now(), last)
	if last > acked {
		s.dirtySince = s.clock.since(acked)
	} else {
		s.dirtySince = time.Time{}
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
		s.log.Warn("degrade journal", logging.Err(err))
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
	s.log.Warn("journal passed --journal-max with the replica away: records folded into dirty extents", "from", from, "to", seq, "extents", len(list))
	// A checkpoint makes the folded records unnecessary for local recovery too, and releases them.
	return s.vol.Checkpoint()
}
