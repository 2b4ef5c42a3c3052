package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"drfs/control"
	drfsfs "drfs/fs"
	"drfs/internal/logging"
	"drfs/internal/netutil"
	"drfs/internal/units"
	"drfs/journal"
	"drfs/replica"
	"drfs/shipper"
	"drfs/tlsutil"
	"drfs/volume"
)

type mountCommand struct {
	source, state, name, metrics string
	pprof                        bool
	mountpoint                   string
	checkpoint                   time.Duration
	segmentSize                  string
	debug, skipUnreplayable      bool
	logFormat                    string
	repl                         replicationFlags
}

// replicationFlags are the primary's replication options.
type replicationFlags struct {
	url        string
	interval   string
	rpo        time.Duration
	bwlimit    string
	journalMax string
	certs      string
	insecure   bool

	schedule shipper.Schedule
	bw, jmax int64
}

func (r *replicationFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.url, "replica", "", "replicate to https://HOST:PORT (drfs serve), file:///DIR (a replica directory here) or export:///DIR (change-log files for offline transport)")
	fs.StringVar(&r.interval, "interval", "", `ship every DURATION (e.g. 30s, 5m) or "continuous" (default 30s)`)
	fs.DurationVar(&r.rpo, "rpo", 0, "ship early enough to keep replica lag under this target (instead of --interval)")
	fs.StringVar(&r.bwlimit, "bwlimit", "", "bandwidth limit to the replica, bytes per second (e.g. 20M)")
	fs.StringVar(&r.journalMax, "journal-max", "", "journal size kept for an absent replica before degrading to a dirty-extent map (e.g. 10G)")
	fs.StringVar(&r.certs, "certs", "", "certificate directory of this site (ca.pem, primary.pem, key.pem; see `drfs certs`)")
	fs.BoolVar(&r.insecure, "insecure", false, "allow a plaintext http:// replica on a loopback address (tests only)")
}

func (r *replicationFlags) validate() error {
	if r.url == "" {
		if r.interval != "" || r.rpo != 0 || r.bwlimit != "" || r.journalMax != "" {
			return errors.New("--interval, --rpo, --bwlimit and --journal-max need --replica")
		}
		return nil
	}
	var err error
	if r.schedule, err = shipper.ParseSchedule(r.interval, r.rpo); err != nil {
		return err
	}
	if r.bw, err = units.ParseBytes(r.bwlimit); err != nil {
		return fmt.Errorf("--bwlimit: %w", err)
	}
	if r.jmax, err = units.ParseBytes(r.journalMax); err != nil {
		return fmt.Errorf("--journal-max: %w", err)
	}
	if strings.HasPrefix(r.url, "https://") && r.certs == "" {
		return errors.New("an https replica needs --certs DIR (create one with `drfs certs`)")
	}
	return nil
}

func (c *mountCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs mount", flag.ContinueOnError)
	fs.StringVar(&c.source, "source", "", "directory that holds the real files (required)")
	fs.StringVar(&c.state, "state", "", "directory for the journal and metadata, outside source and mountpoint (required)")
	fs.StringVar(&c.name, "volume", "", "volume name (default: base name of the source)")
	fs.StringVar(&c.metrics, "metrics", "", "serve Prometheus metrics on this address, e.g. 127.0.0.1:9750")
	fs.BoolVar(&c.pprof, "pprof", false, "also serve Go profiles on a non-loopback --metrics address (on loopback they always are)")
	fs.DurationVar(&c.checkpoint, "checkpoint-interval", volume.DefaultCheckpointInterval, "how often source files are synced and the journal trimmed")
	fs.StringVar(&c.segmentSize, "segment-size", "64M", "size of a journal segment file (preallocated)")
	fs.BoolVar(&c.debug, "debug", false, "log every FUSE request")
	fs.BoolVar(&c.skipUnreplayable, "skip-unreplayable", false, "after a crash, start even if journal records cannot be replayed into the source (those files are marked for resync)")
	logFormatFlag(fs, &c.logFormat)
	c.repl.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: drfs mount --source DIR --state DIR [--volume NAME] [--metrics ADDR] MOUNTPOINT")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("exactly one MOUNTPOINT is required")
	}
	c.mountpoint = pos[0]
	if c.source == "" || c.state == "" {
		return errors.New("--source and --state are required")
	}
	if st, err := os.Stat(c.mountpoint); err != nil || !st.IsDir() {
		return fmt.Errorf("mountpoint %s must be an existing directory", c.mountpoint)
	}
	return c.repl.validate()
}

func (c *mountCommand) Run(ctx context.Context) error {
	logger := newLogger(os.Stderr, c.logFormat)
	seg, err := units.ParseBytes(c.segmentSize)
	if err != nil || (seg != 0 && seg < 1<<20) {
		return fmt.Errorf("--segment-size %q: want a size of at least 1M", c.segmentSize)
	}
	vol, err := volume.Open(volume.Config{
		Source: c.source, State: c.state, Mountpoint: c.mountpoint, Name: c.name,
		CheckpointInterval: c.checkpoint, SegmentSize: seg, Logger: logger,
		SkipUnreplayable: c.skipUnreplayable,
	})
	if err != nil {
		return err
	}
	// The volume's and the shipper's messages carry the volume name already; these are cmd's.
	base := logger
	logger = logger.With("volume", vol.Name())
	closeVol := func() {
		if err := vol.Close(); err != nil {
			logger.Warn("close volume", logging.Err(err))
		}
	}
	reportStart(logger, vol)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := vol.RegisterMetrics(reg); err != nil {
		logger.Warn("metrics", logging.Err(err))
	}
	if err := vol.Journal().RegisterMetrics(reg); err != nil {
		logger.Warn("metrics", logging.Err(err))
	}
	// Everything that answers questions about the volume starts before the mount appears, so
	// `drfs status` works as soon as the mountpoint does.
	var servers []io.Closer
	var ship *shipper.Shipper
	shipDone := make(chan struct{})
	shipCtx, stopShip := context.WithCancel(context.Background())
	defer stopShip()
	cleanup := func() {
		stopShip()
		<-shipDone
		for _, s := range servers {
			s.Close()
		}
		closeVol()
	}
	if c.repl.url != "" {
		if ship, err = c.startShipper(shipCtx, vol, reg, base, shipDone); err != nil {
			close(shipDone)
			cleanup()
			return err
		}
	} else {
		// Mounted without a replica: no consumer needs the journal past a checkpoint.
		vol.SetRetention(func() journal.Seq { return 0 })
		close(shipDone)
	}
	mnt, _ := filepath.Abs(c.mountpoint)
	if ctl, err := control.Listen(vol.StateDir(), &control.Mounted{Volume: vol, Shipper: ship, Mountpoint: mnt}, logger); err != nil {
		logger.Warn("control socket: drfs status will read the state dir instead", logging.Err(err))
	} else {
		servers = append(servers, ctl)
	}
	if c.metrics != "" {
		srv, err := serveHTTP("tcp", c.metrics, metricsMux(reg, c.metrics, c.pprof), logger)
		if err != nil {
			cleanup()
			return fmt.Errorf("metrics listener: %w", err)
		}
		servers = append(servers, srv)
	}

	root, err := drfsfs.NewRoot(vol)
	if err != nil {
		cleanup()
		return err
	}
	attr := time.Second
	opts := &gofs.Options{
		AttrTimeout:  &attr,
		EntryTimeout: &attr,
		MountOptions: fuse.MountOptions{
			AllowOther:    os.Geteuid() == 0,
			FsName:        "drfs:" + vol.Name(),
			Name:          "drfs",
			MaxWrite:      1 << 20,
			MaxBackground: 128,
			DirectMount:   true,
			EnableLocks:   true,
			Debug:         c.debug,
			// Kernel passthrough would let writes bypass the journal.
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
		},
	}
	if os.Geteuid() == 0 {
		opts.MountOptions.Options = append(opts.MountOptions.Options, "default_permissions")
	}
	server, err := gofs.Mount(c.mountpoint, root, opts)
	if err != nil {
		cleanup()
		return fmt.Errorf("mount %s: %w", c.mountpoint, err)
	}
	logger.Info("mounted volume", "id", vol.ID(), "source", vol.Source(), "mountpoint", mnt)
	fmt.Println("mounted")

	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	select {
	case <-ctx.Done():
		logger.Info("stopping: syncing journal and unmounting", "mountpoint", mnt)
		if err := vol.Sync(); err != nil {
			logger.Warn("sync journal", logging.Err(err))
		}
		unmount(server, mnt, logger)
		<-done
	case <-done:
		logger.Info("mountpoint was unmounted", "mountpoint", mnt)
	}
	stopShip()
	<-shipDone
	for _, s := range servers {
		s.Close()
	}
	if err := vol.Close(); err != nil {
		return fmt.Errorf("close volume: %w", err)
	}
	logger.Info("stopped cleanly at the checkpoint", "seq", vol.CheckpointSeq())
	return nil
}

func reportStart(logger *slog.Logger, vol *volume.Volume) {
	st := vol.Start()
	switch {
	case st.New:
		logger.Info("initialised new volume")
	case st.Unclean:
		logger.Warn("last stop was not clean: replayed journal records, marked hot regions for resync", "replayed", st.Replayed, "hot_regions", st.HotRegions)
	}
	if st.Recovery.TornBytes > 0 {
		logger.Warn("journal tail was torn: cut it and kept a copy", "bytes", st.Recovery.TornBytes, "kept_in", st.Recovery.BrokenFile)
	}
	if st.ChangedBack > 0 {
		logger.Warn("files were changed in the source while drfs was not mounted; marked for resync", "files", st.ChangedBack)
	}
}

// unmount asks the kernel to unmount; while the mount is busy (a guest still has files open)
// it retries for a while and then detaches it lazily, so the daemon keeps serving open files
// until they are closed.
func unmount(server *fuse.Server, mnt string, logger *slog.Logger) {
	for i := 0; i < 20; i++ {
		if err := server.Unmount(); err == nil {
			return
		} else if i == 0 {
			logger.Warn("unmount: retrying", "mountpoint", mnt, logging.Err(err))
		}
		time.Sleep(250 * time.Millisecond)
	}
	logger.Warn("mountpoint is busy: detaching lazily; drfs stops when the last open file is closed", "mountpoint", mnt)
	if err := lazyUnmount(mnt); err != nil {
		logger.Warn("lazy unmount", logging.Err(err))
	}
}

func serveHTTP(network, addr string, h http.Handler, logger *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: errorLog(logger)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("http", "addr", addr, logging.Err(err))
		}
	}()
	return srv, nil
}

// startShipper connects the volume to its replica and starts shipping in the background.
// logger is the daemon's, without the volume attribute the shipper adds itself.
func (c *mountCommand) startShipper(ctx context.Context, vol *volume.Volume, reg *prometheus.Registry, logger *slog.Logger, done chan struct{}) (*shipper.Shipper, error) {
	vlog := logger.With("volume", vol.Name())
	var tlsConf *tls.Config
	if c.repl.certs != "" {
		var err error
		if tlsConf, _, err = tlsutil.LoadClient(c.repl.certs); err != nil {
			return nil, err
		}
	}
	target, err := shipper.OpenTarget(c.repl.url, vol.Name(), tlsConf, c.repl.insecure, openLocalReplica, logger)
	if err != nil {
		return nil, err
	}
	cfg := shipper.Config{
		Volume: vol, Target: target, Schedule: c.repl.schedule, BWLimit: c.repl.bw,
		JournalMax: c.repl.jmax, Logger: logger,
	}
	cfg.Progress = progressBar("initial sync")
	cfg.OnDemoted = func() { remountReadOnly(c.mountpoint, vlog) }
	ship, err := shipper.New(cfg)
	if err != nil {
		target.Close()
		return nil, err
	}
	if err := ship.RegisterMetrics(reg); err != nil {
		vlog.Warn("metrics", logging.Err(err))
	}
	vlog.Info("replicating", "replica", target.String(), "schedule", c.repl.schedule.String())
	go func() {
		defer close(done)
		defer target.Close()
		ship.Run(ctx)
	}()
	return ship, nil
}

// metricsMux serves Prometheus metrics on /metrics (and /) for the listen address addr, and
// Go profiles on /debug/pprof/ only when addr is loopback or withPprof is set: a heap profile
// or goroutine dump shows file names, paths and buffers to anyone who can reach the port.
func metricsMux(reg *prometheus.Registry, addr string, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mux.Handle("/metrics", h)
	if withPprof || netutil.IsLoopbackAddr(addr) {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	} else {
		mux.Handle("/debug/", http.NotFoundHandler())
	}
	mux.Handle("/", h)
	return mux
}

// openLocalReplica opens a replica directory on this host (--replica file:///DIR).
func openLocalReplica(dir, name string, logger *slog.Logger) (shipper.Target, error) {
	return replica.OpenLocalTarget(dir, name, replica.Options{Logger: logger, PreparePrimary: volume.Prepare})
}
