package replica

import "github.com/prometheus/client_golang/prometheus"

type serverMetrics struct {
	applied    prometheus.Counter
	rejected   prometheus.Counter
	bytes      prometheus.Counter
	applyDur   prometheus.Histogram
	appliedSeq *prometheus.GaugeVec
}

func newServerMetrics() *serverMetrics {
	return &serverMetrics{
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drfs_replica_logs_applied_total", Help: "Change logs applied.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drfs_replica_logs_rejected_total", Help: "Change logs refused as corrupt or invalid.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drfs_replica_received_bytes_total", Help: "Encoded change-log bytes received and applied.",
		}),
		applyDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "drfs_replica_apply_duration_seconds", Help: "Time to decode, apply durably and commit one change log.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		appliedSeq: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drfs_replica_applied_seq", Help: "Last applied journal seq per volume.",
		}, []string{"volume"}),
	}
}

// RegisterMetrics registers the server's collectors.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.m.applied, s.m.rejected, s.m.bytes, s.m.applyDur, s.m.appliedSeq} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
