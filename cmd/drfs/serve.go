package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"drfs/changelog"
	"drfs/config"
	"drfs/daemon"
	"drfs/internal/httpserve"
	"drfs/internal/logging"
	"drfs/replica"
	"drfs/tlsutil"
	"drfs/volume"
)

// serveCommand is drfs serve: the replica side, configured by a file (--config) or by flags;
// both become one config.Serve, checked by the same code.
type serveCommand struct {
	file                 string
	check, print, reload bool
	f                    config.ServeFlags
	cfg                  *config.Serve
}

// serveFileFlags are the flags that may go with --config: --log-format overrides the file's
// log.format (a unit file may want json whatever the file says).
var serveFileFlags = map[string]bool{"config": true, "check": true, "print-config": true, "reload": true, "log-format": true}

func (c *serveCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs serve", flag.ContinueOnError)
	f := &c.f
	fs.StringVar(&c.file, "config", "", "configuration file, e.g. /etc/drfs/serve.yaml (instead of the other flags); SIGHUP reloads its volumes' allow and retention")
	fs.BoolVar(&c.check, "check", false, "check the configuration and exit (every problem is listed)")
	fs.BoolVar(&c.print, "print-config", false, "print the configuration as a file, every default spelled out, and exit")
	fs.BoolVar(&c.reload, "reload", false, "ask the drfs serve running with --config FILE to reload it (as SIGHUP does), and print what changed or every problem that refused it")
	fs.StringVar(&f.Dir, "dir", "", "replica directory: volume V lives in DIR/V/data and DIR/V/state (required)")
	fs.StringVar(&f.Listen, "listen", "", "address to listen on, e.g. 0.0.0.0:9740 (required)")
	fs.StringVar(&f.Certs, "certs", "", "certificate directory of this site (ca.pem, replica.pem, key.pem; see `drfs certs`)")
	f.Allow = map[string]string{}
	fs.Func("allow", "VOLUME=SITE: serve VOLUME only to the primary of site SITE (repeatable; a volume not named is bound to the first primary that uses it)", func(v string) error {
		vol, site, ok := strings.Cut(v, "=")
		if !ok || vol == "" {
			return fmt.Errorf("want VOLUME=SITE, not %q", v)
		}
		if err := tlsutil.ValidSite(site); err != nil && site != "insecure" {
			return err
		}
		f.Allow[vol] = site
		return nil
	})
	fs.IntVar(&f.MaxConcurrentLogs, "max-concurrent-logs", replica.DefaultMaxConcurrentLogs, "change logs received and applied at once over all volumes")
	fs.BoolVar(&f.Insecure, "insecure", false, "serve plaintext HTTP (tests only; loopback addresses only)")
	fs.IntVar(&f.KeepPoints, "keep-points", config.DefaultKeepPoints, "recovery points kept per volume (at least)")
	fs.DurationVar(&f.KeepFor, "keep-for", 0, "also keep every recovery point younger than this, however many (e.g. 24h); a primary cannot discard them")
	fs.StringVar(&f.Metrics, "metrics", "", "serve Prometheus metrics on this address")
	fs.BoolVar(&f.Pprof, "pprof", false, "also serve Go profiles on a non-loopback --metrics address (on loopback they always are)")
	logFormatFlag(fs, &f.LogFormat)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: drfs serve --config FILE [--check | --print-config | --reload]")
		fmt.Fprintln(fs.Output(), "       drfs serve --dir DIR --listen ADDR (--certs DIR | --insecure) [--allow VOLUME=SITE]... [--keep-points N] [--keep-for D]")
		fs.PrintDefaults()
	}
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if c.file == "" {
		if c.reload {
			return errors.New("--reload needs --config FILE: a drfs serve started with flags has no file to reload")
		}
		var err error
		c.cfg, err = config.FromServeFlags(*f)
		return err
	}
	var mixed []string
	fs.Visit(func(fl *flag.Flag) {
		if !serveFileFlags[fl.Name] {
			mixed = append(mixed, "--"+fl.Name)
		}
	})
	if len(mixed) > 0 {
		return fmt.Errorf("--config %s is the whole configuration: put %s in the file, or leave out --config", c.file, strings.Join(mixed, ", "))
	}
	var err error
	c.cfg, err = readServeConfig(c.file, f.LogFormat)
	var es config.Errors
	if errors.As(err, &es) {
		what := "nothing was started"
		if c.reload {
			what = "the running drfs serve was not asked to reload it"
		}
		return fmt.Errorf("%d problems in the configuration, %s:\n%w", len(es), what, err)
	}
	return err
}

// readServeConfig reads and checks the replica's configuration file; logFormat, if set
// (--log-format), overrides the file's.
func readServeConfig(file, logFormat string) (*config.Serve, error) {
	cfg, err := config.ReadServeFile(file)
	if err != nil {
		return nil, err
	}
	if logFormat != "" {
		cfg.Log.Format = logFormat
	}
	return cfg, nil
}

// primaryIdentity names the site of the primary certificate a request was made with.
func primaryIdentity(r *http.Request) (string, error) {
	id, err := tlsutil.PeerIdentity(r.TLS)
	if err != nil {
		return "", err
	}
	if id.Role != tlsutil.RolePrimary {
		return "", fmt.Errorf("the client presents the certificate of %s", id)
	}
	return id.Site, nil
}

func (c *serveCommand) Run(ctx context.Context) error {
	cfg := c.cfg
	switch {
	case c.print:
		b, err := cfg.Marshal()
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(b)
		return err
	case c.reload:
		return askReload(ctx, cfg.Dir, os.Stdout)
	case c.check:
		from := cfg.File
		if from == "" {
			from = "flags"
		}
		fmt.Printf("%s: configuration OK: %d volumes listed\n", from, len(cfg.Volumes))
		return nil
	}
	// Before anything else: a SIGHUP's default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	logger := newLogger(os.Stderr, cfg.Log.Format)
	warnRetention(logger, cfg)
	notify, watchdog := daemon.Systemd(logger)
	if notify == nil {
		notify = func(string) {}
	}
	srv, err := replica.NewServer(cfg.Dir, replica.Options{KeepPoints: cfg.KeepPoints, KeepFor: cfg.KeepFor, Retention: cfg.Retention,
		Logger: logger, MaxConcurrentLogs: cfg.MaxConcurrentLogs, PreparePrimary: volume.Prepare}, changelog.Limits{})
	if err != nil {
		return err
	}
	defer srv.Close()
	rl := &serveReloader{file: cfg.File, logFormat: c.f.LogFormat, cur: cfg, srv: srv, log: logger, m: newServeMetrics(), notify: notify}
	if !cfg.Insecure {
		rl.identify = primaryIdentity
	}
	srv.SetAccess(replica.Access{Identify: rl.identify, Allow: cfg.Allow()})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv.RegisterMetrics(reg)
	rl.m.register(reg)
	if l := cfg.Metrics.Listen; l != "" {
		m, err := httpserve.Listen("tcp", l, httpserve.Metrics(reg, l, cfg.Metrics.Pprof), logger)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		defer m.Close()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ErrorLog: httpserve.ErrorLog(logger),
		ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	if !cfg.Insecure {
		var id tlsutil.Identity
		if hs.TLSConfig, id, err = tlsutil.LoadServer(cfg.Certs); err != nil {
			ln.Close()
			return err
		}
		logger.Info("serving as", "role", id.Role, "site", id.Site)
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.Insecure {
			errc <- hs.Serve(ln)
		} else {
			errc <- hs.ServeTLS(ln, "", "")
		}
	}()
	scheme := "https"
	if cfg.Insecure {
		scheme = "http"
	}
	url := scheme + "://" + ln.Addr().String()
	rl.status = "serving replicas on " + url
	// Local operator commands (promote, drfs serve --reload) reach the volumes through a unix
	// socket in the replica directory, since this process holds them.
	sock := replica.Layout{Dir: cfg.Dir}.Socket()
	os.Remove(sock)
	local := http.NewServeMux()
	local.Handle("/", srv.LocalHandler())
	local.Handle("POST /v1/reload", rl)
	if ls, err := httpserve.Listen("unix", sock, local, logger); err != nil {
		logger.Warn("local socket: drfs promote needs this server stopped", "path", sock, logging.Err(err))
	} else {
		os.Chmod(sock, 0o600)
		defer ls.Close()
	}
	logger.Info("serving replicas", "dir", cfg.Dir, "url", url, "config", cfg.File)
	fmt.Println("serving")
	notify("READY=1\nSTATUS=" + rl.status)

	var beat <-chan time.Time
	if watchdog > 0 {
		t := time.NewTicker(watchdog / 2)
		defer t.Stop()
		beat = t.C
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			notify("STOPPING=1")
			return err
		case <-hup:
			rl.Reload()
		case <-beat:
			notify("WATCHDOG=1")
		}
	}
	notify("STOPPING=1")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	logger.Info("stopped")
	return nil
}

// warnRetention warns when the default retention protects nothing by age.
func warnRetention(logger *slog.Logger, cfg *config.Serve) {
	if cfg.KeepFor != 0 {
		return
	}
	key, count := "--keep-for", "--keep-points"
	if cfg.File != "" {
		key, count = "keep-for", "keep-points"
	}
	logger.Warn(fmt.Sprintf("%s is not set: a primary that sends many small logs pushes older recovery points out of the last %s; set %s to keep every point of that period whatever a primary sends", key, count, key),
		"keep_points", cfg.KeepPoints)
}
