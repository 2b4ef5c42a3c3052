package link

import (
	"math"
	"slices"
	"time"

	"drfs/internal/units"
)

// writeRateTau is the time constant of the write-rate average.
const writeRateTau = 10 * time.Second

// riskHorizon is how far ahead a miss counts as "at risk": four targets, an hour at least.
func riskHorizon(target time.Duration) time.Duration { return max(4*target, time.Hour) }

// tick samples every member's demand and plans the shares.
func (l *Link) tick() {
	l.mu.Lock()
	ms := slices.Clone(l.members)
	l.mu.Unlock()
	ds := make([]Demand, len(ms))
	for i, m := range ms {
		ds[i] = m.demand()
	}
	l.mu.Lock()
	now := l.cfg.Now()
	for i, m := range ms {
		if !m.left {
			m.observeLocked(ds[i], now)
		}
	}
	msgs := l.planLocked(now)
	l.mu.Unlock()
	for _, f := range msgs {
		f()
	}
}

func (m *Member) observeLocked(d Demand, now time.Time) {
	if !m.lastSample.IsZero() && d.Appended >= m.lastAppended {
		if dt := now.Sub(m.lastSample); dt > 0 {
			inst := float64(d.Appended-m.lastAppended) / dt.Seconds()
			a := 1 - math.Exp(-dt.Seconds()/writeRateTau.Seconds())
			m.writeRate += a * (inst - m.writeRate)
		}
	}
	m.lastAppended, m.lastSample, m.d = d.Appended, now, d
}

// lagLocked is the age of the member's oldest unacknowledged change.
func (m *Member) lagLocked(now time.Time) time.Duration {
	if m.d.Oldest.IsZero() {
		return 0
	}
	return max(now.Sub(m.d.Oldest), 0)
}

// planLocked shares the capacity between the members (see the package documentation) and
// predicts which will miss their RPO targets. It returns the log lines to write once the lock
// is released.
func (l *Link) planLocked(now time.Time) []func() {
	l.pruneLocked(now)
	c, measured := l.capacityLocked()
	known := measured || l.budget > 0
	q := float64(l.quantumLocked())
	order := slices.Clone(l.members)
	slices.SortFunc(order, func(a, b *Member) int {
		if a.memberKey(now).less(b.memberKey(now)) {
			return -1
		}
		return 1
	})
	var used, ahead float64 // write rates and backlogs of the members before this one
	var msgs []func()
	for _, m := range order {
		r, b := m.writeRate*m.ratio, float64(m.d.Pending)*m.ratio
		avail := max(c-used, 0)
		wait := 0.0
		if ahead > 0 {
			wait = math.Inf(1)
			if avail > 0 {
				wait = ahead / avail
			}
		}
		m.plan = plan{share: min(avail, r)}
		if known {
			m.predictLocked(now, avail, wait, q)
		}
		used += r
		ahead += b
		if f := m.riskLocked(now, c); f != nil {
			msgs = append(msgs, f)
		}
	}
	return msgs
}

// predictLocked fills m.plan's prediction: m gets avail bytes per second in the long run, once
// the backlog of the members ahead of it cleared (wait seconds); see the package documentation.
func (m *Member) predictLocked(now time.Time, avail, wait, quantum float64) {
	t := m.p.RPO
	if t <= 0 {
		return
	}
	p := &m.plan
	p.predicted = true
	r, b := m.writeRate*m.ratio, float64(m.d.Pending)*m.ratio
	lag := m.lagLocked(now).Seconds()
	target := t.Seconds()
	if b == 0 && r < 1 {
		p.lagThen = m.lagLocked(now)
		return
	}
	sec := func(x float64) time.Duration { return time.Duration(min(x, 1e7) * float64(time.Second)) }
	if avail > 1.02*r {
		// It keeps up: its oldest change waits for the backlog ahead, then goes in one log;
		// and the last byte of its backlog, written now at the latest, is as old as the
		// time it takes to ship the backlog (a burst of writes).
		peak := max(lag+wait+min(b, quantum)/avail, wait+b/avail)
		p.lagThen = sec(peak)
		if peak > target {
			p.atRisk, p.missIn = true, sec(max(target-lag, 0))
		}
		return
	}
	// It falls behind: its lag grows by a second a second while it waits, then by 1 - avail/r.
	p.falling = true
	g := 1.0
	if r > 0 {
		g = max(1-avail/r, 0.02)
	}
	miss := max(target-lag, 0)
	if lag+wait < target {
		miss = wait + (target-lag-wait)/g
	}
	p.lagThen = sec(lag + min(target, wait) + max(target-wait, 0)*g)
	if sec(miss) <= riskHorizon(t) {
		p.atRisk, p.missIn = true, sec(miss)
	}
}

// riskLocked debounces the at-risk verdict and returns the log line of a change.
func (m *Member) riskLocked(now time.Time, capacity float64) func() {
	rs, p := &m.risk, m.plan
	if p.atRisk {
		rs.seen++
		rs.okSince = time.Time{}
		rs.missIn, rs.lagThen = p.missIn, p.lagThen
	} else {
		rs.seen = 0
		if rs.okSince.IsZero() {
			rs.okSince = now
		}
	}
	log := m.l.log.With("volume", m.name)
	switch {
	case !rs.shown && rs.seen >= 2:
		rs.shown = true
		rs.lastWarn = now
		attrs := m.riskAttrs(capacity)
		return func() {
			log.Warn("RPO target will be missed: the link cannot carry this volume's writes in time", attrs...)
		}
	case rs.shown && p.atRisk && now.Sub(rs.lastWarn) >= 10*time.Minute:
		rs.lastWarn = now
		attrs := m.riskAttrs(capacity)
		return func() { log.Warn("RPO target still at risk", attrs...) }
	case rs.shown && !rs.okSince.IsZero() && now.Sub(rs.okSince) >= riskClear:
		rs.shown = false
		share := units.Bytes(int64(p.share)) + "/s"
		return func() { log.Info("RPO target no longer at risk", "rpo", m.p.RPO, "share", share) }
	}
	return nil
}

func (m *Member) riskAttrs(capacity float64) []any {
	p := m.plan
	bps := func(x float64) string { return units.Bytes(int64(x)) + "/s" }
	return []any{"rpo", m.p.RPO, "tier", m.p.tier(), "miss_in", p.missIn.Round(time.Second),
		"predicted_lag", p.lagThen.Round(time.Second), "share", bps(p.share),
		"writes", bps(m.writeRate * m.ratio), "backlog", units.Bytes(int64(float64(m.d.Pending) * m.ratio)),
		"link", bps(capacity)}
}

// pruneLocked drops the samples older than the reporting window.
func (l *Link) pruneLocked(now time.Time) {
	cut := now.Add(-window)
	i := 0
	for i < len(l.wireEvents) && l.wireEvents[i].at.Before(cut) {
		i++
	}
	l.wireEvents = slices.Delete(l.wireEvents, 0, i)
	l.busyRing = append(l.busyRing, busySample{at: now, busy: l.busyLocked(now)})
	j := 0
	for j < len(l.busyRing)-1 && l.busyRing[j+1].at.Before(cut) {
		j++
	}
	l.busyRing = slices.Delete(l.busyRing, 0, j)
}

// busyRatioLocked is the fraction of the last window at least one log was in flight.
func (l *Link) busyRatioLocked(now time.Time) float64 {
	if len(l.busyRing) == 0 {
		return 0
	}
	first := l.busyRing[0]
	dt := now.Sub(first.at)
	if dt <= 0 {
		return 0
	}
	return min((l.busyLocked(now)-first.busy).Seconds()/dt.Seconds(), 1)
}

// sharesLocked is each member's acknowledged wire bytes over the last window, and their sum.
func (l *Link) sharesLocked() (map[*Member]int64, int64) {
	out := map[*Member]int64{}
	var total int64
	for _, e := range l.wireEvents {
		out[e.m] += e.bytes
		total += e.bytes
	}
	return out, total
}
