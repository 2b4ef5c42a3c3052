package link

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	wait *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drfs_link_wait_seconds",
			Help:    "Time a change log waited for the link before it could be sent.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"site", "volume"}),
	}
}

func (m *metrics) forget(site, volume string) {
	m.wait.DeleteLabelValues(site, volume)
}

// collector exports, at scrape time, the link's state and every member's share and prediction.
type collector struct {
	l                                                           *Link
	capacity, measured, budget, busy, busyTotal                 *prometheus.Desc
	wire, share, planned, writes, backlog, atRisk, missIn, pred *prometheus.Desc
	deadline                                                    *prometheus.Desc
}

// Collector returns the link's metrics, labelled by site (and volume for the members'); one
// registry may hold the collectors of several links.
func (l *Link) Collector() prometheus.Collector {
	site := []string{"site"}
	vol := []string{"site", "volume"}
	d := prometheus.NewDesc
	return &collector{l: l,
		capacity:  d("drfs_link_capacity_bytes_per_second", "Capacity the link is planned with: its budget, or the measured throughput when lower or without a budget.", site, nil),
		measured:  d("drfs_link_measured_bytes_per_second", "Throughput measured on the link while it was saturated (0 until measured).", site, nil),
		budget:    d("drfs_link_budget_bytes_per_second", "Configured link budget (sites.NAME.bandwidth); 0 = none, measured.", site, nil),
		busy:      d("drfs_link_busy_ratio", "Fraction of the last 30 s at least one change log was in flight on the link.", site, nil),
		busyTotal: d("drfs_link_busy_seconds_total", "Time at least one change log was in flight on the link.", site, nil),
		wire:      d("drfs_link_wire_bytes_total", "Change-log bytes the replica acknowledged over the link, by volume.", vol, nil),
		share:     d("drfs_link_share_ratio", "Fraction of the link's acknowledged bytes of the last 30 s that were this volume's.", vol, nil),
		planned:   d("drfs_link_planned_bytes_per_second", "Share of the link the scheduler plans for this volume.", vol, nil),
		writes:    d("drfs_link_write_bytes_per_second", "The volume's write rate, in wire bytes (after compression).", vol, nil),
		backlog:   d("drfs_link_backlog_bytes", "The volume's unacknowledged changes, in wire bytes (after compression).", vol, nil),
		atRisk:    d("drfs_link_rpo_at_risk", "1 when, at its share of the link, the volume is predicted to pass its RPO target.", vol, nil),
		missIn:    d("drfs_link_rpo_miss_in_seconds", "When a volume at risk is predicted to pass its RPO target (exported only while at risk).", vol, nil),
		pred:      d("drfs_link_predicted_lag_seconds", "Predicted replica lag of the volume: when its next log lands, or one RPO target from now when it falls behind.", vol, nil),
		deadline:  d("drfs_link_deadline_seconds", "Time left until the volume's oldest unacknowledged change passes its target (negative: past; exported while there is one).", vol, nil),
	}
}

// Describe describes nothing: the collector is unchecked, so that the collectors of several
// links (the same names, another site label) can share one registry.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	l := c.l
	st := l.Status()
	site := st.Site
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	g(c.capacity, st.CapacityBytesPerSecond, site)
	g(c.measured, st.MeasuredBytesPerSecond, site)
	g(c.budget, float64(st.BudgetBytesPerSecond), site)
	g(c.busy, st.BusyRatio, site)
	l.mu.Lock()
	busy := l.busyLocked(l.cfg.Now())
	totals := map[string]int64{}
	for _, m := range l.members {
		totals[m.name] = m.wireTotal
	}
	l.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.busyTotal, prometheus.CounterValue, busy.Seconds(), site)
	b := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	for _, m := range st.Members {
		v := m.Volume
		ch <- prometheus.MustNewConstMetric(c.wire, prometheus.CounterValue, float64(totals[v]), site, v)
		g(c.share, m.ShareRatio, site, v)
		g(c.planned, m.PlannedBytesPerSecond, site, v)
		g(c.writes, m.WriteBytesPerSecond, site, v)
		g(c.backlog, float64(m.BacklogBytes), site, v)
		g(c.atRisk, b(m.AtRisk), site, v)
		g(c.pred, m.PredictedLagSeconds, site, v)
		if m.AtRisk {
			g(c.missIn, m.MissInSeconds, site, v)
		}
		if m.HasDeadline {
			g(c.deadline, m.DeadlineInSeconds, site, v)
		}
	}
	l.m.wait.Collect(ch)
}
