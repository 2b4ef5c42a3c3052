package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"drfs/changelog"
	"drfs/internal/netutil"
	"drfs/replica"
	"drfs/tlsutil"
)

type serveCommand struct {
	dir, listen, certs, metrics string
	insecure, pprof             bool
	keepPoints                  int
	keepFor                     time.Duration
}

func (c *serveCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs serve", flag.ContinueOnError)
	fs.StringVar(&c.dir, "dir", "", "replica directory: volume V lives in DIR/V/data and DIR/V/state (required)")
	fs.StringVar(&c.listen, "listen", "", "address to listen on, e.g. 0.0.0.0:9740 (required)")
	fs.StringVar(&c.certs, "certs", "", "directory made by `drfs certs` (ca.pem, replica.pem, replica-key.pem)")
	fs.BoolVar(&c.insecure, "insecure", false, "serve plaintext HTTP (tests only; loopback addresses only)")
	fs.IntVar(&c.keepPoints, "keep-points", 24, "recovery points kept per volume (at least)")
	fs.DurationVar(&c.keepFor, "keep-for", 0, "also keep every recovery point younger than this, however many (e.g. 24h); a primary cannot discard them")
	fs.StringVar(&c.metrics, "metrics", "", "serve Prometheus metrics on this address")
	fs.BoolVar(&c.pprof, "pprof", false, "also serve Go profiles on a non-loopback --metrics address (on loopback they always are)")
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

func (c *serveCommand) Run(ctx context.Context) error {
	logger := log.New(os.Stderr, "drfs: ", log.LstdFlags)
	if c.keepFor == 0 {
		logger.Printf("--keep-for is not set: a primary that sends many small logs pushes older recovery points out of the last %d; set --keep-for to keep every point of that period whatever a primary sends", c.keepPoints)
	}
	srv, err := replica.NewServer(c.dir, replica.Options{KeepPoints: c.keepPoints, KeepFor: c.keepFor, Logf: logger.Printf}, changelog.Limits{})
	if err != nil {
		return err
	}
	defer srv.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv.RegisterMetrics(reg)
	if c.metrics != "" {
		m, err := serveHTTP("tcp", c.metrics, metricsMux(reg, c.metrics, c.pprof), logger)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		defer m.Close()
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 30 * time.Second, ErrorLog: logger}
	if !c.insecure {
		if hs.TLSConfig, _, err = tlsutil.LoadDir(c.certs, "replica"); err != nil {
			ln.Close()
			return err
		}
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
	sock := filepath.Join(c.dir, serveSocket)
	os.Remove(sock)
	if ls, err := serveHTTP("unix", sock, srv.LocalHandler(), logger); err != nil {
		logger.Printf("local socket %s: %v (drfs promote needs this server stopped)", sock, err)
	} else {
		os.Chmod(sock, 0o600)
		defer ls.Close()
	}
	scheme := "https"
	if c.insecure {
		scheme = "http"
	}
	logger.Printf("serving replicas in %s on %s://%s", c.dir, scheme, ln.Addr())
	fmt.Println("serving")
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	logger.Printf("stopped")
	return nil
}
