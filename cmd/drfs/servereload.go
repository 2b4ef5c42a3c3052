package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"drfs/config"
	"drfs/internal/logging"
	"drfs/replica"
)

// serveReloader puts a new version of drfs serve's file in force: the volumes' allow
// bindings and retention change at once, for open volumes too; settings that need a restart
// keep their running value. One goroutine calls reload at a time.
type serveReloader struct {
	file      string // "" when configured by flags
	logFormat string // --log-format, which overrides the file's
	cur       *config.Serve
	srv       *replica.Server
	identify  func(*http.Request) (string, error)
	log       *slog.Logger
	m         *serveMetrics
}

// errNoServeFile is the error of a reload of a server configured by flags.
var errNoServeFile = errors.New("drfs serve was started with flags: there is no file to reload (use --config)")

// reload reads the file again. A file with any problem is refused whole: every problem is
// logged and the running configuration stays.
func (r *serveReloader) reload() error {
	if r.file == "" {
		r.log.Warn("reload ignored", logging.Err(errNoServeFile))
		return errNoServeFile
	}
	r.log.Info("reloading the configuration", "file", r.file)
	next, err := readServeConfig(r.file, r.logFormat)
	if err != nil {
		r.m.reloads.WithLabelValues("refused").Inc()
		var es config.Errors
		if !errors.As(err, &es) {
			r.log.Error("reload refused: the running configuration stays", logging.Err(err))
			return err
		}
		r.log.Error("reload refused: the running configuration stays", "file", r.file, "problems", len(es))
		for _, e := range es {
			r.log.Error(e.Error())
		}
		return err
	}
	d := config.DiffServe(r.cur, next)
	if len(d.Restart) > 0 {
		r.log.Warn("reload: these settings take effect when drfs serve restarts; they keep their running value until then",
			"settings", strings.Join(d.Restart, ","))
	}
	next = next.KeepRestartSettings(r.cur)
	r.srv.SetRetention(next.Retention)
	r.srv.SetAccess(replica.Access{Identify: r.identify, Allow: next.Allow()})
	r.cur = next
	warnRetention(r.log, next)
	var changed []string
	for _, c := range d.Volumes {
		changed = append(changed, fmt.Sprintf("%s (%s)", c.Name, strings.Join(c.Fields, ",")))
	}
	r.m.reloads.WithLabelValues("applied").Inc()
	r.log.Info("reload applied", "volumes_changed", strings.Join(changed, "; "), "default_retention_changed", strings.Join(d.Default, ","),
		"keep_points", next.KeepPoints, "keep_for", next.KeepFor)
	return nil
}

// serveMetrics are drfs serve's own series (the replica package has the volumes').
type serveMetrics struct {
	reloads *prometheus.CounterVec
}

func newServeMetrics() *serveMetrics {
	m := &serveMetrics{reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "drfs_serve_reloads_total",
		Help: "Reloads of drfs serve's configuration file, by result: applied, or refused (the old configuration stays).",
	}, []string{"result"})}
	m.reloads.WithLabelValues("applied")
	m.reloads.WithLabelValues("refused")
	return m
}

func (m *serveMetrics) register(reg prometheus.Registerer) { reg.MustRegister(m.reloads) }

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock of systemd's MONOTONIC_USEC.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano() / 1000
}
