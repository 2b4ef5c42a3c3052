package shipper

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	logs, rawBytes, wireBytes, resyncBytes, retries, corrupt, rpoViolations, degraded prometheus.Counter
	cycleDur, failoverPause                                                           prometheus.Histogram
	lag, ackedSeq                                                                     prometheus.Gauge
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
	}
}

// RegisterMetrics registers the shipper's collectors.
func (s *Shipper) RegisterMetrics(reg prometheus.Registerer) error {
	m := s.m
	for _, c := range []prometheus.Collector{m.logs, m.rawBytes, m.wireBytes, m.resyncBytes, m.retries, m.corrupt, m.rpoViolations, m.degraded, m.cycleDur, m.failoverPause, m.lag, m.ackedSeq} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
