package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"drfs/config"
	"drfs/control"
	"drfs/internal/httpserve"
	"drfs/internal/logging"
	"drfs/link"
	"drfs/shipper"
)

// Options configure a Host.
type Options struct {
	// Logger receives every message; the volumes' carry a volume attribute.
	Logger *slog.Logger
	// OpenLocal opens file:// replica directories (replica.OpenLocalTarget, wired by cmd).
	OpenLocal shipper.LocalOpener
	// Progress, if set, returns the progress callback of a volume's initial sync.
	Progress func(volume string) func(done, total int64)
	// Single runs one volume the way drfs mount does: a volume that fails to start ends Run
	// with its error, and the mountpoint being unmounted ends Run cleanly, instead of the
	// volume being started again. No host socket is served.
	Single bool
	// OnMounted, if set, is called each time a volume was mounted.
	OnMounted func(volume string)
	// Notify, if set, sends a systemd notification (READY=1, RELOADING=1, STATUS=...,
	// WATCHDOG=1, STOPPING=1).
	Notify func(state string)
	// Watchdog is the systemd watchdog period (WATCHDOG_USEC); 0: none.
	Watchdog time.Duration
	// RestartMin and RestartMax bound the wait before a failed volume is started again
	// (it doubles from RestartMin after every failure; defaults 1 s and 5 min).
	RestartMin, RestartMax time.Duration
}

// Host runs every volume of one configuration: each mounted, replicated to its site over the
// site's shared link, and kept so — a volume that fails is started again after a backoff and
// never takes another down. Reload applies a new configuration to the running host.
type Host struct {
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry
	m    *hostMetrics

	reloadMu sync.Mutex // one reload at a time
	statusMu sync.Mutex // one STATUS= at a time: counted and sent together

	mu      sync.Mutex
	cfg     *config.Host
	runners map[string]*runner
	links   map[string]*link.Link // by site name

	started   sync.WaitGroup // the first start attempt of every volume
	fatalc    chan error     // Single: what ends Run
	startedAt time.Time
}

// New returns a host that runs cfg; Run starts it.
func New(cfg *config.Host, opts Options) *Host {
	if opts.RestartMin <= 0 {
		opts.RestartMin = time.Second
	}
	if opts.RestartMax <= 0 {
		opts.RestartMax = 5 * time.Minute
	}
	h := &Host{opts: opts, log: logging.OrDiscard(opts.Logger), reg: prometheus.NewRegistry(), m: newHostMetrics(),
		cfg: cfg, runners: map[string]*runner{}, links: map[string]*link.Link{}, fatalc: make(chan error, 1)}
	h.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h.m.register(h.reg)
	return h
}

// Registry is the registry of every metric the host exports.
func (h *Host) Registry() *prometheus.Registry { return h.reg }

// Run starts every volume and keeps them running until ctx ends; then it unmounts them all.
// It fails only for what stops the whole host: the host socket or the metrics address taken.
func (h *Host) Run(ctx context.Context) error {
	h.startedAt = time.Now()
	cfg := h.cfg
	var servers []io.Closer
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	if !h.opts.Single && cfg.Socket != "" {
		srv, err := control.ListenHost(cfg.Socket, h, h.log)
		if err != nil {
			return fmt.Errorf("host socket: %w", err)
		}
		servers = append(servers, srv)
	}
	if l := cfg.Metrics.Listen; l != "" {
		srv, err := httpserve.Listen("tcp", l, httpserve.Metrics(h.reg, l, cfg.Metrics.Pprof), h.log)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		servers = append(servers, srv)
	}
	h.mu.Lock()
	for _, v := range cfg.Volumes {
		h.addLocked(v)
	}
	h.mu.Unlock()
	ready := make(chan struct{})
	go func() { h.started.Wait(); close(ready) }()

	var beat <-chan time.Time
	if h.opts.Watchdog > 0 {
		t := time.NewTicker(h.opts.Watchdog / 2)
		defer t.Stop()
		beat = t.C
	}
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-h.fatalc:
			break loop
		case <-ready:
			ready = nil
			h.notify("READY=1")
			h.notifyStatus()
		case <-beat:
			// The host's loop runs and its locks are free: it is not stuck.
			h.counts()
			h.notify("WATCHDOG=1")
		}
	}
	h.notify("STOPPING=1")
	h.log.Info("stopping every volume")
	h.mu.Lock()
	rs := make([]*runner, 0, len(h.runners))
	for _, r := range h.runners {
		rs = append(rs, r)
	}
	h.mu.Unlock()
	stopAll(rs)
	h.mu.Lock()
	for _, l := range h.links {
		l.Close()
	}
	h.mu.Unlock()
	return err
}

// stopAll stops runners in parallel: one busy mount does not hold the others up.
func stopAll(rs []*runner) {
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() { defer wg.Done(); r.stop() }()
	}
	wg.Wait()
}

// addLocked starts a runner for v.
func (h *Host) addLocked(v *config.Volume) {
	site := h.cfg.Site(v)
	certs := ""
	if site != nil {
		certs = h.cfg.SiteCerts(site)
	}
	r := newRunner(h, v, site, certs)
	h.runners[v.Name] = r
	h.started.Add(1)
	go r.run()
}

// link returns the link to site, made on first use.
func (h *Host) link(site *config.Site) *link.Link {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := h.links[site.Name]; l != nil {
		return l
	}
	l := link.New(link.Config{Site: site.Name, Budget: site.Bandwidth, Logger: h.log})
	h.links[site.Name] = l
	if err := h.reg.Register(l.Collector()); err != nil {
		h.log.Warn("metrics", "site", site.Name, logging.Err(err))
	}
	return l
}

// fatal ends Run (Single).
func (h *Host) fatal(err error) {
	select {
	case h.fatalc <- err:
	default:
	}
}

func (h *Host) notify(state string) {
	if h.opts.Notify != nil {
		h.opts.Notify(state)
	}
}

// counts returns how many volumes the host runs, how many are mounted, and the others' states.
func (h *Host) counts() (n, up int, down []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, r := range h.runners {
		n++
		r.mu.Lock()
		if r.state == control.VolumeRunning {
			up++
		} else {
			down = append(down, name+" "+r.state)
		}
		r.mu.Unlock()
	}
	sort.Strings(down)
	return n, up, down
}

// notifyStatus tells systemd how many volumes are mounted.
func (h *Host) notifyStatus() {
	if h.opts.Notify == nil {
		return
	}
	// Volumes change state concurrently: counted and sent under one lock, the last STATUS=
	// systemd keeps counts every change made before it, never an older count sent late.
	h.statusMu.Lock()
	defer h.statusMu.Unlock()
	n, up, down := h.counts()
	msg := fmt.Sprintf("STATUS=%d of %d volumes mounted", up, n)
	if len(down) > 0 {
		msg += "; " + strings.Join(down, ", ")
	}
	h.notify(msg)
}

// Status implements control.HostService.
func (h *Host) Status(ctx context.Context) control.HostStatus {
	h.mu.Lock()
	cfg := h.cfg
	rs := make([]*runner, 0, len(cfg.Volumes))
	for _, v := range cfg.Volumes {
		if r := h.runners[v.Name]; r != nil {
			rs = append(rs, r)
		}
	}
	var links []*link.Link
	for _, name := range slices.Sorted(maps.Keys(h.links)) {
		if cfg.Sites[name] != nil {
			links = append(links, h.links[name])
		}
	}
	h.mu.Unlock()
	st := control.HostStatus{Config: cfg.File, Started: h.startedAt, Volumes: []control.HostVolume{}, Links: []link.Status{}}
	for _, r := range rs {
		st.Volumes = append(st.Volumes, r.status(ctx))
	}
	for _, l := range links {
		st.Links = append(st.Links, l.Status())
	}
	return st
}

// ErrNoFile is the error of a reload of a host configured by flags.
var ErrNoFile = errors.New("daemon: configured by flags, there is no file to reload")

// Reload implements control.HostService: it reads the configuration file again and applies it.
func (h *Host) Reload(context.Context) (control.ReloadResult, error) {
	h.mu.Lock()
	file := h.cfg.File
	h.mu.Unlock()
	if file == "" {
		return control.ReloadResult{}, ErrNoFile
	}
	data, err := os.ReadFile(file)
	if err == nil {
		var cfg *config.Host
		if cfg, err = config.Parse(file, data); err == nil {
			return h.Apply(cfg)
		}
	}
	h.m.reloads.WithLabelValues("refused").Inc()
	h.log.Error("reload refused: the running configuration stays", logging.Err(err))
	return control.ReloadResult{}, fmt.Errorf("reload refused, the running configuration stays:\n%w", err)
}

// Apply changes the running host to cfg: volumes added are started, volumes removed are
// unmounted, changed ones are changed as little as their change needs (config.Scope), and
// every other volume is left alone. Settings of the whole process (socket, log, metrics)
// take effect when the daemon restarts.
func (h *Host) Apply(cfg *config.Host) (control.ReloadResult, error) {
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	h.notify("RELOADING=1")
	defer h.notify("READY=1")
	h.mu.Lock()
	old := h.cfg
	h.mu.Unlock()
	d := config.Diff(old, cfg)
	next := *cfg
	next.Socket, next.Log, next.Metrics = old.Socket, old.Log, old.Metrics
	if len(d.Process) > 0 {
		h.log.Warn("reload: these settings take effect when drfs daemon restarts", "settings", strings.Join(d.Process, ","))
	}

	h.mu.Lock()
	var gone []*runner
	for _, name := range d.Removed {
		gone = append(gone, h.runners[name])
		delete(h.runners, name)
	}
	h.mu.Unlock()
	stopAll(gone)
	for _, name := range d.Removed {
		h.m.forget(name)
		h.log.Info("reload: volume removed and unmounted", "volume", name)
	}

	type change struct {
		r     *runner
		v     *config.Volume
		site  *config.Site
		certs string
		scope config.Scope
	}
	var changes []change
	h.mu.Lock()
	h.cfg = &next
	for _, name := range d.Bandwidth {
		if l := h.links[name]; l != nil {
			l.SetBudget(next.Sites[name].Bandwidth)
			h.log.Info("reload: link budget changed", "site", name, "bandwidth", next.Sites[name].Bandwidth)
		}
	}
	res := control.ReloadResult{Added: d.Added, Removed: d.Removed, Untouched: d.Untouched, Bandwidth: d.Bandwidth, Process: d.Process}
	for _, c := range d.Changed {
		v := next.Volume(c.Name)
		ch := change{r: h.runners[c.Name], v: v, site: next.Site(v), scope: c.Scope}
		if ch.site != nil {
			ch.certs = next.SiteCerts(ch.site)
		}
		changes = append(changes, ch)
		res.Changed = append(res.Changed, fmt.Sprintf("%s (%s: %s)", c.Name, strings.Join(c.Fields, ","), c.Scope))
		h.log.Info("reload: volume changed", "volume", c.Name, "fields", strings.Join(c.Fields, ","), "scope", c.Scope.String())
	}
	h.mu.Unlock()
	// Outside the host's lock: applying may ask for a site's link.
	for _, c := range changes {
		c.r.apply(c.v, c.site, c.certs, c.scope)
	}
	h.mu.Lock()
	for _, name := range d.Added {
		h.addLocked(next.Volume(name))
		h.log.Info("reload: volume added", "volume", name)
	}
	h.mu.Unlock()
	h.m.reloads.WithLabelValues("applied").Inc()
	h.log.Info("reload applied", "added", len(d.Added), "removed", len(d.Removed), "changed", len(d.Changed), "untouched", len(d.Untouched))
	return res, nil
}
