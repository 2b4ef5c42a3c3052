package shipper

import (
	"github.com/prometheus/client_golang/prometheus"

	"drfs/wire"
)

type metrics struct {
	logs, rawBytes, wireBytes, resyncBytes, retries, corrupt, rpoViolations, degraded prometheus.Counter
	cycleDur, failoverPause                                                           prometheus.Histogram
	lag, ackedSeq, verifyDiffs                                                        prometheus.Gauge
}

func newMetrics() *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return &metrics{
		logs:          c("drfs_shipper_logs_total", "Change logs acknowledged by the replica."),
		rawBytes:      c("drfs_shipper_raw_bytes_total", "Uncompressed change-log body bytes shipped."),
		wireBytes:     c("drfs_shipper_wire_bytes_total", "Encoded (compressed) change-log bytes shipped."),
		resyncBytes:   c("drfs_shipper_resync_bytes_total", "Encoded bytes of resync logs (initial sync, repairs)."),
		retries:       c("drfs_shipper_retries_total", "Replication sessions that failed and were retried."),
		corrupt:       c("drfs_shipper_logs_corrupted_total", "Logs the replica refused as undecodable (corrupted in transit)."),
		rpoViolations: c("drfs_shipper_rpo_violations_total", "Times the replica lag went past the RPO target."),
		degraded:      c("drfs_shipper_journal_degraded_total", "Times the journal was folded into a dirty-extent map."),
		cycleDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "drfs_shipper_cycle_duration_seconds", Help: "Time to cut, encode, send and get one change log acknowledged.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		failoverPause: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "drfs_shipper_failover_pause_seconds", Help: "Guest pause of each planned failover, whatever its outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		lag:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "drfs_shipper_lag_seconds", Help: "Age of the oldest change not yet acknowledged by the replica."}),
		ackedSeq: prometheus.NewGauge(prometheus.GaugeOpts{Name: "drfs_shipper_acked_seq", Help: "Last journal seq acknowledged by the replica."}),
		verifyDiffs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drfs_shipper_verify_differences",
			Help: "Differences the last completed drfs verify found between primary and replica (0 before the first).",
		}),
	}
}

// replicationStates are the values of drfs_shipper_replication_state's state label, every one
// exported (0 or 1) so that a state's absence is not confused with a missing series.
var replicationStates = []wire.ReplicationState{
	wire.StateConnecting, wire.StateSyncing, wire.StateReplicating, wire.StateDisconnected,
	wire.StateDegraded, wire.StateFenced, wire.StateDemoted,
}

// statusCollector exports, at scrape time, what Status reports and the configured limits.
type statusCollector struct {
	s                                             *Shipper
	state, inDoubt, rpoTarget, journalMax, resync *prometheus.Desc
}

func newStatusCollector(s *Shipper) *statusCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &statusCollector{
		s:          s,
		state:      d("drfs_shipper_replication_state", "1 for the current replication state (as drfs status shows it), 0 for the others.", "state"),
		inDoubt:    d("drfs_shipper_failover_in_doubt", "1 while a planned failover is in doubt: writes are refused until it is resolved."),
		rpoTarget:  d("drfs_shipper_rpo_target_seconds", "RPO target of the schedule (--rpo); 0 when shipping on an interval."),
		journalMax: d("drfs_shipper_journal_max_bytes", "Journal bytes kept for an absent replica before degrading (--journal-max); 0 = unlimited."),
		resync:     d("drfs_shipper_resync_pending", "1 while extents wait to be compared with the replica (after a degrade, a crash or a changed source)."),
	}
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.inDoubt, c.rpoTarget, c.journalMax, c.resync} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Status()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	for _, s := range replicationStates {
		g(c.state, b(st.State == s), string(s))
	}
	g(c.inDoubt, b(st.Failover == "in-doubt"))
	g(c.rpoTarget, st.RPOTargetSeconds)
	_, jmax := c.s.sched()
	g(c.journalMax, float64(jmax))
	g(c.resync, b(c.s.vol.ResyncPending()))
}

// RegisterMetrics registers the shipper's collectors.
func (s *Shipper) RegisterMetrics(reg prometheus.Registerer) error {
	m := s.m
	for _, c := range []prometheus.Collector{m.logs, m.rawBytes, m.wireBytes, m.resyncBytes, m.retries, m.corrupt, m.rpoViolations, m.degraded, m.cycleDur, m.failoverPause, m.lag, m.ackedSeq, m.verifyDiffs, newStatusCollector(s)} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
