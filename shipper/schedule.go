package shipper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"drfs/internal/units"
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
		return "rpo " + units.Duration(s.RPO)
	}
	return "every " + units.Duration(s.Interval)
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
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	lastBeat := time.Now()
	var lastEstimate time.Time
	for {
		sch, _ := s.sched() // a reload may change it while we wait
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
			if pending && time.Since(lastEstimate) >= 20*time.Millisecond {
				lastEstimate = time.Now()
				s.mu.Lock()
				lag := s.lagLocked(s.cfg.Now())
				raw := s.pendingLocked()
				s.mu.Unlock()
				// Ship once the lag, the wait for the link (behind the volumes ahead of this
				// one) and the transfer reach half of the target, leaving the other half as
				// margin for the estimate's error; or as soon as a full log's worth is
				// waiting, so that a busy volume keeps the link busy rather than bunching
				// its backlog up against its deadline.
				if lag+s.member.Estimate(raw) >= sch.RPO/2 || raw >= s.member.Quantum() {
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
