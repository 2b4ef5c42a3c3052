package shipper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"drfs/changelog"
	"drfs/journal"
	"drfs/link"
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

// shipOne sends one change log starting at next+1 and ending at most at end, as large as the
// link grants.
func (s *Shipper) shipOne(ctx context.Context, end uint64) error {
	g, err := s.member.Acquire(ctx)
	if err != nil {
		return err
	}
	raw, wireBytes, full, err := s.shipGranted(ctx, end, g)
	g.Done(raw, wireBytes, full, err)
	return err
}

// shipGranted is shipOne once the link was granted; it returns the raw and encoded bytes the
// replica acknowledged and whether the log was cut at the grant's size.
func (s *Shipper) shipGranted(ctx context.Context, end uint64, g *link.Grant) (raw, wireBytes int64, full bool, err error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	t0 := time.Now()
	appendedAtCut := s.vol.AppendedBytes()
	from := s.next.Load() + 1
	// Only durable records leave the site: a record the primary could still lose must never
	// reach the replica, or the two would diverge after a power loss here.
	if err := s.j.Sync(journal.Seq(end)); err != nil {
		return 0, 0, false, fmt.Errorf("sync journal: %w", err)
	}
	limit := min(g.MaxRaw(), s.cfg.MaxLogBytes)
	var ops []journal.Op
	to := from - 1
	stop := errors.New("full")
	err = s.j.Read(journal.Seq(from), journal.Seq(end), func(r journal.Record) error {
		if raw >= limit {
			full = true
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
		return 0, 0, false, fmt.Errorf("read journal %d-%d: %w", from, end, err)
	}
	if to < from {
		return 0, 0, false, nil
	}
	l := &changelog.Log{
		Header: changelog.Header{Kind: changelog.KindJournal, VolumeID: s.vol.ID(), Generation: s.vol.Generation(), FromSeq: from, ToSeq: to, Created: t0.UTC()},
		Ops:    changelog.Coalesce(ops),
	}
	b, stats, err := changelog.Marshal(l)
	if err != nil {
		return 0, 0, false, fmt.Errorf("encode change log: %w", err)
	}
	applied, err := s.send(ctx, g, b)
	var ref *RefusedError
	if errors.As(err, &ref) {
		switch ref.Code {
		case wire.CodeGap:
			s.log.Info("log refused as a gap: resending from the replica's seq", "seq", ref.Applied, "from", from, "to", to)
			return 0, 0, false, s.realign(ref.Applied)
		case wire.CodeStale, wire.CodeVolume:
			return 0, 0, false, fmt.Errorf("%w: %s", ErrFenced, ref.Msg)
		case wire.CodeBadLog:
			s.m.corrupt.Inc()
			return 0, 0, false, fmt.Errorf("replica could not decode log %d-%d (corrupted in transit?): %s", from, to, ref.Msg)
		}
		return 0, 0, false, err
	}
	if err != nil {
		if errors.Is(err, ErrReplicaApply) {
			s.mu.Lock()
			s.applyErr = err.Error()
			s.mu.Unlock()
			s.applyErrs.Add(1)
		}
		return 0, 0, false, fmt.Errorf("send log %d-%d: %w", from, to, err)
	}
	if err := s.vol.Meta().SetUint(keyNext, to); err != nil {
		return 0, 0, false, err
	}
	s.next.Store(to)
	s.applied.Store(applied)
	now := time.Now()
	s.mu.Lock()
	s.shippedMark += raw
	if uint64(s.j.LastSeq()) == to {
		// Caught up: every byte appended before the cut was shipped.
		s.shippedMark = max(s.shippedMark, appendedAtCut)
	}
	s.markLocked(to)
	s.trackLagLocked()
	s.mu.Unlock()
	s.m.logs.Inc()
	s.m.rawBytes.Add(float64(stats.RawBytes))
	s.m.wireBytes.Add(float64(len(b)))
	s.m.cycleDur.Observe(now.Sub(t0).Seconds())
	s.m.ackedSeq.Set(float64(to))
	s.vol.ReleaseJournal()
	return raw, int64(len(b)), full, nil
}

// streamer is a Target that streams a log's body from a reader, so the link paces it while it
// is on the wire (the HTTP target).
type streamer interface {
	SendStream(ctx context.Context, n int64, body func() io.Reader) (uint64, error)
}

// send delivers an encoded log under grant g: paced to the link budget while it is on the
// wire, and the link told when the upload is over (the next log may start while this one is
// applied).
func (s *Shipper) send(ctx context.Context, g *link.Grant, b []byte) (uint64, error) {
	if st, ok := s.t.(streamer); ok {
		return st.SendStream(ctx, int64(len(b)), func() io.Reader { return g.Reader(ctx, b) })
	}
	if err := g.Pace(ctx, int64(len(b))); err != nil {
		return 0, err
	}
	g.Sent()
	return s.t.Send(ctx, b)
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
	s.reanchor()
	return s.vol.Meta().SetUint(keyNext, applied)
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
