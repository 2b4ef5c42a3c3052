package shipper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"drfs/internal/audit"
	"drfs/internal/logging"
	"drfs/volume"
	"drfs/wire"
)

// HandOverPause bounds the guest pause of a hand-over the replica asked for (drfs promote
// without --force while this primary is alive).
const HandOverPause = time.Minute

// FailoverResult reports a planned failover. Pause is set on failure too: guests were paused
// that long.
type FailoverResult struct {
	Key        string        `json:"key"`
	Generation uint64        `json:"generation"`
	Seq        uint64        `json:"seq"`
	Pause      time.Duration `json:"pause_ns"`
	NewSource  string        `json:"new_primary_source"`
	NewState   string        `json:"new_primary_state"`
}

// ResolveResult reports how a failover in doubt ended.
type ResolveResult struct {
	Key     string `json:"key"`
	Outcome string `json:"outcome"` // none, aborted, demoted
	Detail  string `json:"detail"`
}

// ErrInDoubt means a planned failover asked the replica to promote and could not learn the
// outcome in time: the volume refuses writes until Resolve learns it.
var ErrInDoubt = errors.New("shipper: failover in doubt")

// newFailoverKey names a planned failover started on this side.
func newFailoverKey() string {
	var b [12]byte
	rand.Read(b[:])
	return "fo-" + hex.EncodeToString(b[:])
}

// loadHandOver picks up a failover left in doubt by an earlier run (New calls it).
func (s *Shipper) loadHandOver() error {
	h, err := s.vol.Meta().HandOver()
	if err != nil {
		return err
	}
	if h != nil {
		s.handOver.Store(h)
		s.failover = "in-doubt"
	}
	s.handOverSeen, err = s.vol.Meta().String(volume.KeyHandOverSeen)
	return err
}

func (s *Shipper) setFailover(phase string) {
	s.mu.Lock()
	s.failover = phase
	s.mu.Unlock()
}

func (s *Shipper) inDoubt() bool { return s.handOver.Load() != nil }

// PlannedFailover switches the primary role to the replica with zero data loss, following
// the protocol in doc.go; ctx's deadline bounds the guests' pause. key names the failover
// ("" picks one). On success this side is demoted and its volume read-only. On a refusal the
// volume takes writes again and nothing changed. When the replica's answer cannot be learned
// in time the error wraps ErrInDoubt and the volume refuses writes until Resolve.
func (s *Shipper) PlannedFailover(ctx context.Context, key string) (FailoverResult, error) {
	res := FailoverResult{Key: key}
	if !s.foMu.TryLock() {
		return res, errors.New("a failover of this volume is already running")
	}
	defer s.foMu.Unlock()
	switch h := s.handOver.Load(); {
	case h != nil:
		return res, fmt.Errorf("planned failover %s is in doubt: run drfs failover --resolve first", h.Key)
	case s.isDemoted():
		return res, errors.New("this side was already demoted")
	case s.resyncOutstanding():
		return res, errors.New("a resync is under way (see drfs status): retry when replication_state is replicating")
	}
	if key == "" {
		key = newFailoverKey()
	}
	res.Key = key
	t0 := time.Now()
	resume := s.vol.Pause()
	paused := true
	finish := func() {
		if paused {
			resume()
			paused = false
			res.Pause = time.Since(t0)
			s.m.failoverPause.Observe(res.Pause.Seconds())
		}
	}
	defer finish()

	// 1. Ship the last log: every acknowledged write reaches the replica.
	s.setFailover("draining")
	last := uint64(s.j.LastSeq())
	if err := s.drain(ctx, last); err != nil {
		s.setFailover("")
		finish()
		go s.abandon(key) // a hand-over request is answered, and the key can never promote
		return res, fmt.Errorf("%w; nothing changed, this side is still the primary (guests paused %s)", err, res.Pause.Round(time.Millisecond))
	}
	// 2. Record the intent before asking: from here a restart comes back refusing writes.
	gen := s.vol.Generation()
	h := volume.HandOver{Key: key, Generation: gen, Seq: last, Time: time.Now().UTC(), Replica: s.t.String()}
	if err := s.vol.Meta().RecordHandOver(h); err != nil {
		s.setFailover("")
		return res, fmt.Errorf("record the hand-over: %w; nothing changed, this side is still the primary", err)
	}
	s.handOver.Store(&h)
	s.setFailover("promoting")
	s.log.Info("planned failover: replica holds the last seq; asking it to promote", "failover", key, "seq", last)

	// 3. Ask, and ask again, until the replica answers or the pause bound is reached.
	pr, err := s.askPromote(ctx, h)
	var ref *RefusedError
	switch {
	case err == nil:
		res.Generation, res.Seq, res.NewSource, res.NewState = pr.Generation, last, pr.Source, pr.State
		if derr := s.stepDown(h, pr.Generation, fmt.Sprintf("planned failover to %s (generation %d)", s.t, pr.Generation), pr.State); derr != nil {
			s.fence(h, derr)
			finish()
			return res, fmt.Errorf("%w: the replica promoted, but recording the demotion here failed: %v; this side refuses writes; drfs failover --resolve records it", ErrInDoubt, derr)
		}
		finish()
		s.log.Info("planned failover done: replica promoted", "failover", key, "generation", pr.Generation, "seq", last, "paused", res.Pause.Round(time.Microsecond))
		return res, nil
	case errors.As(err, &ref) && ref.Code == wire.CodeRefused:
		if cerr := s.stayPrimary(h, "refused by the replica: "+ref.Msg); cerr != nil {
			s.fence(h, cerr)
			finish()
			return res, fmt.Errorf("%w: the replica refused the failover (%s) but clearing the hand-over here failed: %v", ErrInDoubt, ref.Msg, cerr)
		}
		finish()
		return res, fmt.Errorf("the replica refused the failover: %s; nothing changed, this side is still the primary (guests paused %s)", ref.Msg, res.Pause.Round(time.Millisecond))
	case errors.As(err, &ref) && ref.Code == wire.CodeStale:
		reason := "superseded by another promotion of the replica: " + ref.Msg
		if derr := s.stepDown(h, gen+1, reason, ""); derr != nil {
			s.fence(h, derr)
		}
		finish()
		return res, fmt.Errorf("%w: %s; this side is demoted", ErrFenced, ref.Msg)
	}
	// 4. No answer within the bound: the replica may have promoted. Refuse writes until known.
	s.fence(h, err)
	finish()
	return res, fmt.Errorf("%w: the replica did not answer within the pause bound (last error: %v): it may or may not have promoted. "+
		"This side refuses writes (EROFS) until the outcome is known; it keeps asking in the background, or run: drfs failover --resolve --state %s",
		ErrInDoubt, err, s.vol.StateDir())
}

// askPromote sends the promote request until an answer arrives or ctx ends; the request is
// idempotent by key, so a lost request or reply is simply asked again.
func (s *Shipper) askPromote(ctx context.Context, h volume.HandOver) (wire.PromoteResult, error) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		pr, err := s.t.Promote(actx, h.Seq, h.Key)
		cancel()
		var ref *RefusedError
		if err == nil || errors.As(err, &ref) {
			return pr, err
		}
		s.log.Warn("planned failover: promote request failed", "failover", h.Key, "attempt", attempt, logging.Err(err))
		select {
		case <-ctx.Done():
			return pr, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// stepDown records durably that this side is no longer the primary (and the hand-over over),
// then makes the volume read-only.
func (s *Shipper) stepDown(h volume.HandOver, newGen uint64, reason, newState string) error {
	if err := s.vol.Meta().Demote(volume.RoleRecord{Reason: reason, Generation: newGen, Seq: h.Seq}); err != nil {
		return fmt.Errorf("record demotion: %w", err)
	}
	s.vol.SetReadOnly(reason)
	s.vol.Unfence()
	s.handOver.Store(nil)
	s.mu.Lock()
	s.state, s.lastErr, s.demoted, s.failover = wire.StateDemoted, "", true, ""
	s.mu.Unlock()
	s.vol.Audit(audit.Entry{Action: "failover", GenBefore: h.Generation, GenAfter: newGen, Point: h.Seq,
		Detail: fmt.Sprintf("planned %s: this side demoted (%s); new primary at %s (state %s)", h.Key, reason, s.t, newState)})
	if s.cfg.OnDemoted != nil {
		s.cfg.OnDemoted()
	}
	return nil
}

// stayPrimary records that the replica will never promote under h's key and lets writes in.
func (s *Shipper) stayPrimary(h volume.HandOver, why string) error {
	if err := s.vol.Meta().ClearHandOver(); err != nil {
		return fmt.Errorf("clear the hand-over record: %w", err)
	}
	s.handOver.Store(nil)
	s.vol.Unfence()
	s.setFailover("")
	s.vol.Audit(audit.Entry{Action: "failover-aborted", GenBefore: h.Generation, GenAfter: h.Generation, Point: h.Seq,
		Detail: fmt.Sprintf("planned %s: %s; this side stays the primary", h.Key, why)})
	s.log.Warn("planned failover did not happen: this side stays the primary", "failover", h.Key, "reason", why)
	return nil
}

// fence makes the volume refuse writes while h's outcome is unknown.
func (s *Shipper) fence(h volume.HandOver, cause error) {
	s.vol.Fence(fmt.Sprintf("planned failover %s to %s (generation %d at seq %d) is in doubt: %v", h.Key, s.t, h.Generation+1, h.Seq, cause))
	s.mu.Lock()
	s.failover = "in-doubt"
	s.lastErr = time.Now().UTC().Format(time.RFC3339) + " failover in doubt: " + cause.Error()
	s.mu.Unlock()
}

// abandon tells the replica, best effort, that key will never promote: a failover that
// failed before asking, so a waiting drfs promote on the replica site learns it.
func (s *Shipper) abandon(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.t.AbortPromote(ctx, key); err != nil {
		s.log.Warn("planned failover: tell the replica it was abandoned", "failover", key, logging.Err(err))
	}
}

// Resolve learns the outcome of a failover in doubt by asking the replica to abort it: the
// replica answers either that it promoted under the key (this side is demoted) or that it
// never will (this side takes writes again). Without an answer nothing changes.
func (s *Shipper) Resolve(ctx context.Context) (ResolveResult, error) {
	s.foMu.Lock()
	defer s.foMu.Unlock()
	h := s.handOver.Load()
	if h == nil {
		if s.isDemoted() {
			return ResolveResult{Outcome: "demoted", Detail: "this side is demoted"}, nil
		}
		return ResolveResult{Outcome: "none", Detail: "no failover in doubt: this side is the primary"}, nil
	}
	res := ResolveResult{Key: h.Key}
	pr, err := s.t.AbortPromote(ctx, h.Key)
	var ref *RefusedError
	switch {
	case errors.As(err, &ref) && ref.Code == wire.CodeStale:
		res.Outcome, res.Detail = "demoted", "superseded by another promotion of the replica: "+ref.Msg
		return res, s.stepDown(*h, h.Generation+1, res.Detail, "")
	case err != nil:
		return res, fmt.Errorf("ask the replica: %w; the failover is still in doubt and this side refuses writes", err)
	case pr.Aborted:
		res.Outcome, res.Detail = "aborted", "the replica did not promote and never will under this key"
		return res, s.stayPrimary(*h, "aborted after it was in doubt")
	}
	res.Outcome = "demoted"
	res.Detail = fmt.Sprintf("the replica promoted to generation %d at seq %d; its primary state is %s", pr.Generation, pr.Seq, pr.State)
	return res, s.stepDown(*h, pr.Generation, fmt.Sprintf("planned failover to %s (generation %d)", s.t, pr.Generation), pr.State)
}

// ForceResume ends a failover in doubt without the replica's answer: the operator vouches
// that the replica did not promote (its site is lost). If it did, both sides take writes.
func (s *Shipper) ForceResume() (ResolveResult, error) {
	s.foMu.Lock()
	defer s.foMu.Unlock()
	h := s.handOver.Load()
	if h == nil {
		return ResolveResult{Outcome: "none", Detail: "no failover in doubt"}, nil
	}
	return ResolveResult{Key: h.Key, Outcome: "aborted", Detail: "forced by the operator without the replica's answer"},
		s.stayPrimary(*h, "forced by the operator without the replica's answer")
}

// resolveLoop asks the replica about a failover in doubt until the outcome is known or ctx
// ends.
func (s *Shipper) resolveLoop(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil && s.inDoubt() {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := s.Resolve(rctx)
		cancel()
		if err == nil {
			s.log.Info("failover resolved", "failover", r.Key, "outcome", r.Outcome, "detail", r.Detail)
			return
		}
		s.log.Warn("resolve failover in doubt", logging.Err(err), "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// handOverRequested starts the planned failover the replica asked for (drfs promote without
// --force), once per request ID, however often the request is seen.
func (s *Shipper) handOverRequested(st wire.State) {
	id := st.HandOverID
	if id == "" && st.HandOver != nil {
		id = "ho-at-" + st.HandOver.UTC().Format(time.RFC3339Nano) // a replica that names no ID
	}
	if id == "" || s.isDemoted() {
		return
	}
	s.mu.Lock()
	seen := s.handOverSeen == id
	s.handOverSeen = id
	s.mu.Unlock()
	if seen {
		return
	}
	if err := s.vol.Meta().SetString(volume.KeyHandOverSeen, id); err != nil {
		s.log.Warn("record hand-over request", "request", id, logging.Err(err))
	}
	s.log.Info("the replica asked this primary to hand over: running a planned failover", "request", id)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), HandOverPause)
		defer cancel()
		if _, err := s.PlannedFailover(ctx, id); err != nil {
			s.log.Warn("hand-over failed", "request", id, logging.Err(err))
			s.setErr(fmt.Errorf("hand-over requested by the replica failed: %w", err))
		}
	}()
}

// drain waits, with the volume paused, until the replica acknowledged seq. It gives up when
// ctx ends, when this primary is fenced, or as soon as the replica reports it cannot apply.
func (s *Shipper) drain(ctx context.Context, seq uint64) error {
	// Guests are paused: this volume's last logs go ahead of every other volume's on the link.
	s.member.SetUrgent(true)
	defer s.member.SetUrgent(false)
	applyErrs := s.applyErrs.Load()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for s.applied.Load() < seq {
		s.Kick()
		select {
		case <-ctx.Done():
			return fmt.Errorf("the replica did not acknowledge seq %d (at %d): %w", seq, s.applied.Load(), ctx.Err())
		case <-tick.C:
		}
		s.mu.Lock()
		state, applyErr := s.state, s.applyErr
		s.mu.Unlock()
		if state == wire.StateFenced {
			return errors.New("this primary is fenced")
		}
		if s.applyErrs.Load() != applyErrs {
			return fmt.Errorf("the replica cannot apply the last log: %s", applyErr)
		}
	}
	return nil
}
