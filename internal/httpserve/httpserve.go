// Package httpserve holds what drfs's daemons share to serve HTTP: a listener started in the
// background, the Prometheus endpoint with its profiles, and the servers' error log.
package httpserve

import (
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"drfs/internal/logging"
	"drfs/internal/netutil"
)

// Listen serves h on network/addr ("tcp" or "unix") in the background; Close the server to
// stop it.
func Listen(network, addr string, h http.Handler, logger *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: ErrorLog(logger)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("http", "addr", addr, logging.Err(err))
		}
	}()
	return srv, nil
}

// Metrics serves Prometheus metrics on /metrics (and /) for the listen address addr, and Go
// profiles on /debug/pprof/ only when addr is loopback or withPprof is set: a heap profile or
// goroutine dump shows file names, paths and buffers to anyone who can reach the port.
func Metrics(reg *prometheus.Registry, addr string, withPprof bool) http.Handler {
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

// ErrorLog adapts l for the standard library's servers (http.Server.ErrorLog).
func ErrorLog(l *slog.Logger) *log.Logger { return slog.NewLogLogger(l.Handler(), slog.LevelWarn) }
