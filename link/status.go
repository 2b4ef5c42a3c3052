package link

import (
	"slices"
	"time"
)

// Status is a link as `drfs status` shows it.
type Status struct {
	Site string `json:"site"`
	// BudgetBytesPerSecond is the configured budget (0: none).
	BudgetBytesPerSecond int64 `json:"budget_bytes_per_second"`
	// CapacityBytesPerSecond is what the link is planned with: the budget, or the measured
	// throughput when it is lower or there is no budget.
	CapacityBytesPerSecond float64 `json:"capacity_bytes_per_second"`
	// MeasuredBytesPerSecond is the throughput measured on the link (0: not yet).
	MeasuredBytesPerSecond float64 `json:"measured_bytes_per_second"`
	// BusyRatio is the fraction of the last 30 s at least one log was in flight.
	BusyRatio float64        `json:"busy_ratio"`
	Members   []MemberStatus `json:"volumes"`
}

// MemberStatus is one volume's place on its link.
type MemberStatus struct {
	Volume string `json:"volume"`
	Site   string `json:"site"`
	Tier   int    `json:"tier"`
	// RPOTargetSeconds is the RPO target (0: none).
	RPOTargetSeconds float64 `json:"rpo_target_seconds"`
	// DeadlineInSeconds is the time left until the oldest unacknowledged change passes the
	// target (negative: past), when there is one (HasDeadline).
	DeadlineInSeconds float64 `json:"deadline_in_seconds"`
	HasDeadline       bool    `json:"has_deadline"`
	// ShareRatio is the fraction of the link's acknowledged bytes of the last 30 s that were
	// this volume's, ShareBytesPerSecond their rate.
	ShareRatio          float64 `json:"share_ratio"`
	ShareBytesPerSecond float64 `json:"share_bytes_per_second"`
	// PlannedBytesPerSecond is the share the last plan gave the volume.
	PlannedBytesPerSecond float64 `json:"planned_bytes_per_second"`
	// WriteBytesPerSecond and BacklogBytes are the volume's writes and backlog, in wire bytes
	// (from its measured compression ratio).
	WriteBytesPerSecond float64 `json:"write_bytes_per_second"`
	BacklogBytes        int64   `json:"backlog_bytes"`
	// AtRisk: at its share, the volume's lag will pass its RPO target in MissInSeconds;
	// PredictedLagSeconds is its lag when its next log lands (keeping up) or one target from
	// now (falling behind).
	AtRisk              bool    `json:"at_risk"`
	MissInSeconds       float64 `json:"miss_in_seconds,omitempty"`
	PredictedLagSeconds float64 `json:"predicted_lag_seconds"`
	FallingBehind       bool    `json:"falling_behind"`
	// Waiting: the volume waits for the link for its next log.
	Waiting bool `json:"waiting"`
}

// Status reports the link and its members.
func (l *Link) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	c, _ := l.capacityLocked()
	st := Status{Site: l.cfg.Site, BudgetBytesPerSecond: l.budget, CapacityBytesPerSecond: c,
		MeasuredBytesPerSecond: l.measured, BusyRatio: l.busyRatioLocked(now)}
	shares, total := l.sharesLocked()
	for _, m := range l.members {
		st.Members = append(st.Members, m.statusLocked(now, shares[m], total))
	}
	slices.SortFunc(st.Members, func(a, b MemberStatus) int {
		if a.Tier != b.Tier {
			return a.Tier - b.Tier
		}
		if a.Volume < b.Volume {
			return -1
		}
		return 1
	})
	return st
}

// Status reports the member's place on its link.
func (m *Member) Status() MemberStatus {
	l := m.l
	l.mu.Lock()
	defer l.mu.Unlock()
	shares, total := l.sharesLocked()
	return m.statusLocked(l.cfg.Now(), shares[m], total)
}

func (m *Member) statusLocked(now time.Time, mine, total int64) MemberStatus {
	st := MemberStatus{Volume: m.name, Site: m.l.cfg.Site, Tier: m.p.tier(), RPOTargetSeconds: m.p.RPO.Seconds(),
		PlannedBytesPerSecond: m.plan.share, WriteBytesPerSecond: m.writeRate * m.ratio,
		BacklogBytes: int64(float64(m.d.Pending) * m.ratio), AtRisk: m.risk.shown,
		PredictedLagSeconds: m.plan.lagThen.Seconds(), FallingBehind: m.plan.falling && m.plan.predicted}
	if total > 0 {
		st.ShareRatio = float64(mine) / float64(total)
	}
	if elapsed := min(window, now.Sub(m.l.started)); elapsed > 0 {
		st.ShareBytesPerSecond = float64(mine) / elapsed.Seconds()
	}
	if m.risk.shown {
		st.MissInSeconds = m.risk.missIn.Seconds()
		st.PredictedLagSeconds = m.risk.lagThen.Seconds()
	}
	if !m.d.Oldest.IsZero() && m.p.target() > 0 {
		st.HasDeadline = true
		st.DeadlineInSeconds = m.d.Oldest.Add(m.p.target()).Sub(now).Seconds()
	}
	for _, w := range m.l.waiters {
		if w.m == m {
			st.Waiting = true
		}
	}
	return st
}
