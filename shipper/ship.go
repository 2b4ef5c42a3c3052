package shipper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"drfs/changelog"
	"drfs/journal"
	"drfs/wire"
)

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
	cut := s.cfg.Now() // lag clock: records appended after this are younger
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
			s.log.Info("log refused as a gap: resending from the replica's seq", "seq", ref.Applied, "from", from, "to", to)
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
		s.dirtySince = cut
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

// SyncNow starts a cycle at once and waits until the replica has acknowledged every record
// journaled before the call. It returns the acknowledged seq.
func (s *Shipper) SyncNow(ctx context.Context) (uint64, error) {
	target := uint64(s.j.LastSeq())
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if a := s.applied.Load(); a >= target && !s.resyncOutstanding() {
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
