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
	c, _ := l.capacityLocked()
	q := float64(l.quantumLocked())
	order := slices.Clone(l.members)
	slices.SortFunc(order, func(a, b *Member) int {
		if a.memberKey(now).less(b.memberKey(now)) {
			return -1
		}
		return 1
	})
	left := c
	for _, m := range order {
		r, b := m.writeRate*m.ratio, float64(m.d.Pending)*m.ratio
		h := time.Minute
		if t := m.p.RPO; t > 0 {
			h = max(t-m.lagLocked(now), t/4)
		}
		give := min(left, r+b/h.Seconds())
		m.plan = plan{share: give}
		left -= give
	}
	for _, m := range order {
		if left <= 0 {
			break
		}
		if b := float64(m.d.Pending) * m.ratio; b > 0 {
			extra := min(left, b)
			m.plan.share += extra
			left -= extra
		}
	}
	var msgs []func()
	for _, m := range order {
		m.predictLocked(now, q)
		if f := m.riskLocked(now, c); f != nil {
			msgs = append(msgs, f)
		}
	}
	return msgs
}

// predictLocked fills m.plan's prediction from its share (see the package documentation).
func (m *Member) predictLocked(now time.Time, quantum float64) {
	t := m.p.RPO
	if t <= 0 {
		return
	}
	p := &m.plan
	p.predicted = true
	r, b, s := m.writeRate*m.ratio, float64(m.d.Pending)*m.ratio, p.share
	lag := m.lagLocked(now)
	q := min(b, quantum)
	if b == 0 && r < 1 {
		p.lagThen = lag
		return
	}
	sec := func(x float64) time.Duration { return time.Duration(min(x, 1e6) * float64(time.Second)) }
	if s > 0 && s > 1.02*r {
		p.lagThen = lag + sec(q/s)
		if p.lagThen > t {
			p.atRisk, p.missIn = true, max(t-lag, 0)
		}
		return
	}
	p.falling = true
	g, qs := 1.0, 0.0
	if s > 0 {
		qs = q / s
		if r > 0 {
			g = 1 - s/r
		}
	}
	g = max(g, 0.02)
	miss := sec(max(t.Seconds()-lag.Seconds()-qs, 0) / g)
	p.lagThen = lag + sec(t.Seconds()*g+qs)
	if miss <= riskHorizon(t) {
		p.atRisk, p.missIn = true, miss
	}
}

// riskLocked debounces the at-risk verdict and returns the log line of a change.
func (m *Member) riskLocked(now time.Time, capacity float64) func() {
	rs, p := &m.risk, m.plan
	if p.atRisk {
		rs.seen++
		rs.okSince = time.Time{}
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
