package daemon

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// tracked is a Registerer that remembers what was registered through it, so that everything a
// volume registered can be unregistered when it stops (its series disappear with it).
type tracked struct {
	reg prometheus.Registerer
	mu  sync.Mutex
	cs  []prometheus.Collector
}

// volumeRegisterer returns the registerer of volume name: every series it exports carries
// the label volume=name.
func volumeRegisterer(reg prometheus.Registerer, name string) *tracked {
	return &tracked{reg: prometheus.WrapRegistererWith(prometheus.Labels{"volume": name}, reg)}
}

func (t *tracked) Register(c prometheus.Collector) error {
	if err := t.reg.Register(c); err != nil {
		return err
	}
	t.mu.Lock()
	t.cs = append(t.cs, c)
	t.mu.Unlock()
	return nil
}

func (t *tracked) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

func (t *tracked) Unregister(c prometheus.Collector) bool { return t.reg.Unregister(c) }

// unregisterAll unregisters everything registered through t.
func (t *tracked) unregisterAll() {
	t.mu.Lock()
	cs := t.cs
	t.cs = nil
	t.mu.Unlock()
	for _, c := range cs {
		t.reg.Unregister(c)
	}
}

// hostMetrics are the daemon's own series: one volume up or not, its restarts, reloads.
type hostMetrics struct {
	up       *prometheus.GaugeVec
	restarts *prometheus.CounterVec
	reloads  *prometheus.CounterVec
}

func newHostMetrics() *hostMetrics {
	return &hostMetrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drfs_daemon_volume_up",
			Help: "1 while the volume is mounted by drfs daemon, 0 while it starts, fails or restarts.",
		}, []string{"volume"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drfs_daemon_volume_failures_total",
			Help: "Times a volume failed to start or stopped unexpectedly (drfs daemon tries it again).",
		}, []string{"volume"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drfs_daemon_reloads_total",
			Help: "Configuration reloads, by result: applied, or refused (the old configuration stays).",
		}, []string{"result"}),
	}
}

func (m *hostMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.up, m.restarts, m.reloads)
	m.reloads.WithLabelValues("applied")
	m.reloads.WithLabelValues("refused")
}

func (m *hostMetrics) forget(volume string) {
	m.up.DeleteLabelValues(volume)
	m.restarts.DeleteLabelValues(volume)
}
