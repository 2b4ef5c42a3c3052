package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"

	"drfs/config"
	"drfs/control"
	"drfs/internal/logging"
	"drfs/journal"
	"drfs/shipper"
	"drfs/tlsutil"
	"drfs/volume"
)

// runner keeps one volume of the configuration mounted: it starts it, and when it fails to
// start or stops unexpectedly, starts it again after a backoff, without touching any other
// volume.
type runner struct {
	h    *Host
	name string
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// remount asks the running instance to stop and start again (a reload changed the mount);
	// retry asks a failed volume to try again now (a reload changed it).
	remount, retry chan struct{}

	mu        sync.Mutex
	cfg       *config.Volume
	site      *config.Site // nil: not replicated
	certs     string       // certificate directory towards site
	state     string
	lastErr   string
	errAt     time.Time
	restarts  int
	nextStart time.Time
	inst      *instance
}

func newRunner(h *Host, v *config.Volume, site *config.Site, certs string) *runner {
	// Exported from the start: increase() sees the first failure.
	h.m.restarts.WithLabelValues(v.Name)
	h.m.up.WithLabelValues(v.Name)
	ctx, cancel := context.WithCancel(context.Background())
	return &runner{h: h, name: v.Name, log: h.log.With("volume", v.Name), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), remount: make(chan struct{}, 1), retry: make(chan struct{}, 1),
		cfg: v, site: site, certs: certs, state: control.VolumeStarting}
}

// config returns what the volume runs with now.
func (r *runner) config() (*config.Volume, *config.Site, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg, r.site, r.certs
}

func (r *runner) setState(s string) {
	r.mu.Lock()
	r.state = s
	r.mu.Unlock()
	up := 0.0
	if s == control.VolumeRunning {
		up = 1
	}
	r.h.m.up.WithLabelValues(r.name).Set(up)
	r.h.notifyStatus()
}

// fail records why the volume is not mounted and when it is tried again.
func (r *runner) fail(err error, retryIn time.Duration) {
	r.mu.Lock()
	r.lastErr, r.errAt = err.Error(), time.Now()
	r.restarts++
	r.nextStart = time.Now().Add(retryIn)
	r.mu.Unlock()
	r.h.m.restarts.WithLabelValues(r.name).Inc()
	r.setState(control.VolumeRestarting)
}

// run is the runner's goroutine: start, wait, start again, until stop.
func (r *runner) run() {
	defer close(r.done)
	backoff := r.h.opts.RestartMin
	first := true
	for {
		r.setState(control.VolumeStarting)
		inst, err := r.start()
		if first {
			first = false
			r.h.started.Done()
		}
		if r.ctx.Err() != nil {
			if inst != nil {
				r.stopInstance(inst)
			}
			return
		}
		if err != nil {
			r.log.Error("volume failed to start; trying again later", logging.Err(err), "retry_in", backoff)
			if r.h.opts.Single {
				r.h.fatal(err)
				return
			}
			r.fail(err, backoff)
			if !r.pause(backoff) {
				return
			}
			backoff = min(2*backoff, r.h.opts.RestartMax)
			continue
		}
		r.mu.Lock()
		r.inst, r.nextStart = inst, time.Time{}
		r.mu.Unlock()
		r.setState(control.VolumeRunning)
		if r.h.opts.OnMounted != nil {
			r.h.opts.OnMounted(r.name)
		}
		up := time.Now()
		var why error
		unmounted := false
		select {
		case <-r.ctx.Done():
		case <-r.remount:
			r.log.Info("configuration changed: mounting the volume again")
		case <-inst.unmounted:
			unmounted = true
			why = errors.New("the mountpoint was unmounted while drfs was serving it")
		case why = <-inst.failed:
		}
		r.stopInstance(inst)
		if r.ctx.Err() != nil {
			return
		}
		if why == nil {
			backoff = r.h.opts.RestartMin
			continue
		}
		if r.h.opts.Single {
			if unmounted {
				// drfs mount: unmounting the mountpoint is how a user stops it.
				r.log.Info("mountpoint was unmounted", "mountpoint", inst.mnt)
				why = nil
			}
			r.h.fatal(why)
			return
		}
		if time.Since(up) > r.h.opts.RestartMax {
			backoff = r.h.opts.RestartMin
		}
		r.log.Error("volume stopped; mounting it again later", logging.Err(why), "retry_in", backoff)
		r.fail(why, backoff)
		if !r.pause(backoff) {
			return
		}
		backoff = min(2*backoff, r.h.opts.RestartMax)
	}
}

// pause waits d, or less when a reload asks to try again now; false when the runner stops.
func (r *runner) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return false
	case <-t.C:
	case <-r.retry:
	}
	return true
}

func (r *runner) stopInstance(inst *instance) {
	r.setState(control.VolumeStopping)
	r.mu.Lock()
	r.inst = nil
	r.mu.Unlock()
	inst.stop()
}

// stop unmounts the volume and ends the runner.
func (r *runner) stop() {
	r.cancel()
	<-r.done
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// apply gives the runner a changed configuration of its volume (a reload): a schedule change
// applies in place, a replica change restarts only the shipper, anything else mounts the
// volume again.
func (r *runner) apply(v *config.Volume, site *config.Site, certs string, scope config.Scope) {
	r.mu.Lock()
	r.cfg, r.site, r.certs = v, site, certs
	inst := r.inst
	r.mu.Unlock()
	if inst == nil {
		poke(r.retry) // failing or starting: the next try uses the new configuration
		return
	}
	switch scope {
	case config.ScopeSchedule:
		if s := inst.mounted.Shipper(); s != nil {
			s.SetSchedule(v.Schedule, v.Tier, v.JournalMax)
			r.log.Info("schedule changed", "schedule", v.Schedule.String(), "tier", v.Tier, "journal_max", v.JournalMax)
		}
	case config.ScopeReplication:
		inst.stopShipping()
		if site == nil {
			inst.vol.SetRetention(func() journal.Seq { return 0 })
			r.log.Info("replication stopped: the volume has no replica any more")
			return
		}
		if err := inst.startShipping(v, site, certs); err != nil {
			inst.fail(fmt.Errorf("replicate to site %s: %w", site.Name, err))
		}
	default:
		poke(r.remount)
	}
}

// status is the volume as the host socket reports it.
func (r *runner) status(ctx context.Context) control.HostVolume {
	r.mu.Lock()
	v, site := r.cfg, r.site
	hv := control.HostVolume{Name: r.name, State: r.state, Source: v.Source, StateDir: v.State, Mountpoint: v.Mountpoint,
		Error: r.lastErr, ErrorTime: r.errAt, Restarts: r.restarts, NextStart: r.nextStart}
	inst := r.inst
	r.mu.Unlock()
	if site != nil {
		hv.Site, hv.Tier, hv.Schedule = site.Name, v.Tier, v.Schedule.String()
	}
	if inst != nil {
		st := inst.mounted.Status(ctx)
		hv.Status = &st
	}
	return hv
}

// instance is one mounted volume: the open volume, its shipper when it replicates, its
// control socket and its FUSE mount.
type instance struct {
	r       *runner
	log     *slog.Logger
	vol     *volume.Volume
	mnt     string
	mounted *control.Mounted
	metrics *tracked
	ctl     *control.Server
	server  *fuse.Server
	conn    uint32 // FUSE connection number (fusectl)

	unmounted chan struct{} // closed when the FUSE server ends
	failed    chan error    // a part of the instance failed: the runner mounts it again

	shipMu sync.Mutex
	ship   *shipping // nil: not replicating
}

// shipping is a running shipper.
type shipping struct {
	s       *shipper.Shipper
	target  shipper.Target
	metrics *tracked
	cancel  context.CancelFunc
	done    chan struct{}
}

// start opens, replicates and mounts the volume. A panic in it is an error of this volume.
func (r *runner) start() (inst *instance, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("panic while starting the volume", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	v, site, certs := r.config()
	vc := v.VolumeConfig()
	vc.Logger = r.h.log
	vol, err := volume.Open(vc)
	if err != nil {
		return nil, err
	}
	// The volume's own name (its state directory's, when the configuration gives none) labels
	// what it logs and exports.
	log := r.log
	if vol.Name() != r.name {
		log = r.h.log.With("volume", vol.Name())
	}
	inst = &instance{r: r, log: log, vol: vol, mnt: v.Mountpoint, unmounted: make(chan struct{}), failed: make(chan error, 1),
		metrics: volumeRegisterer(r.h.reg, vol.Name())}
	inst.mounted = &control.Mounted{Volume: vol, Mountpoint: v.Mountpoint}
	defer func() {
		if err != nil {
			inst.stop()
			inst = nil
		}
	}()
	reportStart(log, vol)
	for _, reg := range []func(prometheus.Registerer) error{vol.RegisterMetrics, vol.Journal().RegisterMetrics} {
		if err := reg(inst.metrics); err != nil {
			log.Warn("metrics", logging.Err(err))
		}
	}
	// Everything that answers questions about the volume starts before the mount appears,
	// so `drfs status` works as soon as the mountpoint does.
	if site != nil {
		if err := inst.startShipping(v, site, certs); err != nil {
			return inst, fmt.Errorf("replicate to site %s: %w", site.Name, err)
		}
	} else {
		// No consumer needs the journal past a checkpoint.
		vol.SetRetention(func() journal.Seq { return 0 })
	}
	if inst.ctl, err = control.Listen(vol.StateDir(), inst.mounted, log); err != nil {
		log.Warn("control socket: drfs status will read the state dir instead", logging.Err(err))
		err = nil
	}
	if inst.server, err = mountFUSE(vol, v.Mountpoint, r.log, v.Debug); err != nil {
		return inst, fmt.Errorf("mount %s: %w", v.Mountpoint, err)
	}
	if inst.conn, err = fuseConn(v.Mountpoint); err != nil {
		log.Warn("FUSE connection number unknown: a stop cannot abort a mount another namespace holds", logging.Err(err))
		err = nil
	}
	go func() { inst.server.Wait(); close(inst.unmounted) }()
	log.Info("mounted volume", "id", vol.ID(), "source", vol.Source(), "mountpoint", v.Mountpoint)
	return inst, nil
}

// startShipping connects the volume to its replica site and starts shipping.
func (inst *instance) startShipping(v *config.Volume, site *config.Site, certs string) error {
	h := inst.r.h
	var tlsConf *tls.Config
	if site.TLS() {
		var err error
		if tlsConf, _, err = tlsutil.LoadClient(certs); err != nil {
			return err
		}
	}
	target, err := shipper.OpenTarget(site.URL, inst.vol.Name(), tlsConf, site.Insecure, h.opts.OpenLocal, h.log)
	if err != nil {
		return err
	}
	cfg := shipper.Config{Volume: inst.vol, Target: target, Schedule: v.Schedule, JournalMax: v.JournalMax,
		Link: h.link(site), Tier: v.Tier, Logger: h.log}
	if h.opts.Progress != nil {
		cfg.Progress = h.opts.Progress(inst.vol.Name())
	}
	mnt := v.Mountpoint
	cfg.OnDemoted = func() { remountReadOnly(mnt, inst.log) }
	s, err := shipper.New(cfg)
	if err != nil {
		target.Close()
		return err
	}
	sp := &shipping{s: s, target: target, metrics: volumeRegisterer(h.reg, inst.vol.Name()), done: make(chan struct{})}
	if err := s.RegisterMetrics(sp.metrics); err != nil {
		inst.log.Warn("metrics", logging.Err(err))
	}
	var ctx context.Context
	ctx, sp.cancel = context.WithCancel(context.Background())
	inst.shipMu.Lock()
	inst.ship = sp
	inst.shipMu.Unlock()
	inst.mounted.SetShipper(s)
	inst.log.Info("replicating", "replica", target.String(), "site", site.Name, "schedule", v.Schedule.String(), "tier", v.Tier)
	go func() {
		defer close(sp.done)
		defer func() {
			if p := recover(); p != nil {
				inst.log.Error("panic in replication", "panic", p, "stack", string(debug.Stack()))
				inst.fail(fmt.Errorf("replication: panic: %v", p))
			}
		}()
		s.Run(ctx)
	}()
	return nil
}

// stopShipping stops the shipper, if any, and waits for it.
func (inst *instance) stopShipping() {
	inst.shipMu.Lock()
	sp := inst.ship
	inst.ship = nil
	inst.shipMu.Unlock()
	if sp == nil {
		return
	}
	inst.mounted.SetShipper(nil)
	sp.cancel()
	<-sp.done
	sp.target.Close()
	sp.s.Close()
	sp.metrics.unregisterAll()
}

// fail reports that a part of the instance failed; the runner mounts the volume again.
func (inst *instance) fail(err error) {
	select {
	case inst.failed <- err:
	default:
	}
}

// stop unmounts and closes everything the instance started, in the order drfs mount always
// did: the journal synced, the mount gone, the shipper stopped, the volume checkpointed and
// closed.
func (inst *instance) stop() {
	if inst.server != nil {
		select {
		case <-inst.unmounted:
		default:
			inst.log.Info("stopping: syncing journal and unmounting", "mountpoint", inst.mnt)
			if err := inst.vol.Sync(); err != nil {
				inst.log.Warn("sync journal", logging.Err(err))
			}
			unmount(inst.server, inst.mnt, inst.conn, inst.log)
			<-inst.unmounted
		}
	}
	inst.stopShipping()
	if inst.ctl != nil {
		inst.ctl.Close()
	}
	if err := inst.vol.Close(); err != nil {
		inst.log.Warn("close volume", logging.Err(err))
	} else {
		inst.log.Info("stopped cleanly at the checkpoint", "seq", inst.vol.CheckpointSeq())
	}
	inst.metrics.unregisterAll()
}
