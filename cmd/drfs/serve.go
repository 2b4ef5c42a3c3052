package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"drfs/changelog"
	"drfs/internal/httpserve"
	"drfs/internal/logging"
	"drfs/internal/netutil"
	"drfs/replica"
	"drfs/tlsutil"
	"drfs/volume"
)

type serveCommand struct {
	dir, listen, certs, metrics string
	insecure, pprof             bool
	keepPoints                  int
	keepFor                     time.Duration
	allow                       map[string]string
	maxLogs                     int
	logFormat                   string
}

func (c *serveCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs serve", flag.ContinueOnError)
	fs.StringVar(&c.dir, "dir", "", "replica directory: volume V lives in DIR/V/data and DIR/V/state (required)")
	fs.StringVar(&c.listen, "listen", "", "address to listen on, e.g. 0.0.0.0:9740 (required)")
	fs.StringVar(&c.certs, "certs", "", "certificate directory of this site (ca.pem, replica.pem, key.pem; see `drfs certs`)")
	c.allow = map[string]string{}
	fs.Func("allow", "VOLUME=SITE: serve VOLUME only to the primary of site SITE (repeatable; a volume not named is bound to the first primary that uses it)", func(v string) error {
		vol, site, ok := strings.Cut(v, "=")
		if !ok || vol == "" {
			return fmt.Errorf("want VOLUME=SITE, not %q", v)
		}
		if err := tlsutil.ValidSite(site); err != nil && site != "insecure" {
			return err
		}
		c.allow[vol] = site
		return nil
	})
	fs.IntVar(&c.maxLogs, "max-concurrent-logs", replica.DefaultMaxConcurrentLogs, "change logs received and applied at once over all volumes")
	fs.BoolVar(&c.insecure, "insecure", false, "serve plaintext HTTP (tests only; loopback addresses only)")
	fs.IntVar(&c.keepPoints, "keep-points", 24, "recovery points kept per volume (at least)")
	fs.DurationVar(&c.keepFor, "keep-for", 0, "also keep every recovery point younger than this, however many (e.g. 24h); a primary cannot discard them")
	fs.StringVar(&c.metrics, "metrics", "", "serve Prometheus metrics on this address")
	fs.BoolVar(&c.pprof, "pprof", false, "also serve Go profiles on a non-loopback --metrics address (on loopback they always are)")
	logFormatFlag(fs, &c.logFormat)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	switch {
	case c.dir == "" || c.listen == "":
		return errors.New("--dir and --listen are required")
	case c.insecure && c.certs != "":
		return errors.New("use either --certs or --insecure")
	case !c.insecure && c.certs == "":
		return errors.New("--certs DIR is required (create one with `drfs certs`), or --insecure for a loopback test")
	case c.keepPoints < 1:
		return errors.New("--keep-points must be at least 1")
	}
	if c.insecure {
		host, _, err := net.SplitHostPort(c.listen)
		if err != nil {
			return fmt.Errorf("--listen %q: %w", c.listen, err)
		}
		if !netutil.IsLoopbackHost(host) {
			return fmt.Errorf("--insecure refuses to listen on %s: plaintext is only for loopback tests", host)
		}
	}
	return nil
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
	logger := newLogger(os.Stderr, c.logFormat)
	if c.keepFor == 0 {
		logger.Warn("--keep-for is not set: a primary that sends many small logs pushes older recovery points out of the last --keep-points; set --keep-for to keep every point of that period whatever a primary sends", "keep_points", c.keepPoints)
	}
	srv, err := replica.NewServer(c.dir, replica.Options{KeepPoints: c.keepPoints, KeepFor: c.keepFor, Logger: logger, MaxConcurrentLogs: c.maxLogs,
		PreparePrimary: volume.Prepare}, changelog.Limits{})
	if err != nil {
		return err
	}
	access := replica.Access{Allow: c.allow}
	if !c.insecure {
		access.Identify = primaryIdentity
	}
	srv.SetAccess(access)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv.RegisterMetrics(reg)
	if c.metrics != "" {
		m, err := httpserve.Listen("tcp", c.metrics, httpserve.Metrics(reg, c.metrics, c.pprof), logger)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		defer m.Close()
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ErrorLog: httpserve.ErrorLog(logger),
		ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	if !c.insecure {
		var id tlsutil.Identity
		if hs.TLSConfig, id, err = tlsutil.LoadServer(c.certs); err != nil {
			ln.Close()
			return err
		}
		logger.Info("serving as", "role", id.Role, "site", id.Site)
	}
	errc := make(chan error, 1)
	go func() {
		if c.insecure {
			errc <- hs.Serve(ln)
		} else {
			errc <- hs.ServeTLS(ln, "", "")
		}
	}()
	// Local operator commands (promote) reach the volumes through a unix socket in the replica
	// directory, since this process holds them.
	sock := replica.Layout{Dir: c.dir}.Socket()
	os.Remove(sock)
	if ls, err := httpserve.Listen("unix", sock, srv.LocalHandler(), logger); err != nil {
		logger.Warn("local socket: drfs promote needs this server stopped", "path", sock, logging.Err(err))
	} else {
		os.Chmod(sock, 0o600)
		defer ls.Close()
	}
	scheme := "https"
	if c.insecure {
		scheme = "http"
	}
	logger.Info("serving replicas", "dir", c.dir, "url", scheme+"://"+ln.Addr().String())
	fmt.Println("serving")
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	logger.Info("stopped")
	return nil
}
