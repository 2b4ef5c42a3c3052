package volume

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	checkpointSeq prometheus.Gauge
	checkpointDur prometheus.Histogram
	hotMarks      prometheus.Counter
	hotDur        prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		checkpointSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drfs_volume_checkpoint_seq",
			Help: "Journal seq up to which every record is durable in the source files.",
		}),
		checkpointDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drfs_volume_checkpoint_duration_seconds",
			Help:    "Time to checkpoint: syncfs of the source, file table and checkpoint seq recorded.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		hotMarks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drfs_volume_hot_regions_marked_total",
			Help: "Activity-log regions recorded hot (each costs one group-committed journal sync).",
		}),
		hotDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drfs_volume_hot_mark_duration_seconds",
			Help:    "Time a write waited to record its region hot.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
}

// RegisterMetrics registers the volume's collectors.
func (v *Volume) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{v.m.checkpointSeq, v.m.checkpointDur, v.m.hotMarks, v.m.hotDur} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
