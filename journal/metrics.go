package journal

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are built by Open and exported by RegisterMetrics. Counters are
// plain atomics read by CounterFuncs so Append pays one atomic add each.
type metrics struct {
	records, bytes, fsyncs atomic.Uint64

	fsyncDur   prometheus.Histogram
	collectors []prometheus.Collector
}

func (j *Journal) initMetrics(labels prometheus.Labels) {
	m := &j.m
	m.fsyncDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "drfs_journal_fsync_duration_seconds",
		Help:        "Latency of journal segment fdatasyncs.",
		ConstLabels: labels,
		// 10µs .. ~10s, like etcd_disk_wal_fsync_duration_seconds.
		Buckets: prometheus.ExponentialBuckets(0.00001, 2, 20),
	})
	m.collectors = []prometheus.Collector{
		m.fsyncDur,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "drfs_journal_records_appended_total",
			Help:        "Records appended to the journal.",
			ConstLabels: labels,
		}, func() float64 { return float64(m.records.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "drfs_journal_bytes_appended_total",
			Help:        "Bytes appended to the journal, including framing.",
			ConstLabels: labels,
		}, func() float64 { return float64(m.bytes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "drfs_journal_fsyncs_total",
			Help:        "Journal segment fdatasyncs (group commits).",
			ConstLabels: labels,
		}, func() float64 { return float64(m.fsyncs.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "drfs_journal_size_bytes",
			Help:        "Bytes of journal segments on disk.",
			ConstLabels: labels,
		}, func() float64 { return float64(j.Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "drfs_journal_last_seq",
			Help:        "Last assigned journal sequence number.",
			ConstLabels: labels,
		}, func() float64 { return float64(j.LastSeq()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "drfs_journal_durable_seq",
			Help:        "Highest journal sequence number known durable.",
			ConstLabels: labels,
		}, func() float64 { return float64(j.DurableSeq()) }),
	}
}

// RegisterMetrics registers the journal's collectors on reg. Use
// Options.MetricLabels to tell several journals in one registry apart.
func (j *Journal) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range j.m.collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Stats is a snapshot of the journal's counters.
type Stats struct {
	Records, Bytes, Fsyncs uint64
}

// Stats returns the journal's counters (the same numbers the metrics show).
func (j *Journal) Stats() Stats {
	return Stats{Records: j.m.records.Load(), Bytes: j.m.bytes.Load(), Fsyncs: j.m.fsyncs.Load()}
}
