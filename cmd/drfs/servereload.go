package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"drfs/config"
	"drfs/internal/logging"
	"drfs/replica"
	"drfs/wire"
)

// serveReloader puts a new version of drfs serve's file in force: the volumes' allow
// bindings and retention change at once, for open volumes too; settings that need a restart
// keep their running value. SIGHUP and POST /v1/reload on the local socket (drfs serve
// --reload) both call Reload.
type serveReloader struct {
	file      string // "" when configured by flags
	logFormat string // --log-format, which overrides the file's
	srv       *replica.Server
	identify  func(*http.Request) (string, error)
	log       *slog.Logger
	m         *serveMetrics
	notify    func(string) // systemd's; never nil
	status    string       // STATUS= while serving

	mu  sync.Mutex // one reload at a time
	cur *config.Serve
}

// serveReloadResult is the answer of POST /v1/reload: what the reload changed.
type serveReloadResult struct {
	Volumes []string `json:"volumes,omitempty"` // "erp (keep-for)"
	Default []string `json:"default,omitempty"` // top-level retention keys
	Restart []string `json:"restart,omitempty"` // settings kept until drfs serve restarts
}

// Reload reloads the file, telling systemd (RELOADING=1 with the time of the request, then
// READY=1 and a STATUS that says whether the last reload was refused).
func (r *serveReloader) Reload() (serveReloadResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	d, err := r.reload()
	st := r.status
	if err != nil {
		st += "; the last reload was refused (see the log)"
	}
	r.notify("READY=1\nSTATUS=" + st)
	res := serveReloadResult{Default: d.Default, Restart: d.Restart}
	for _, c := range d.Volumes {
		res.Volumes = append(res.Volumes, fmt.Sprintf("%s (%s)", c.Name, strings.Join(c.Fields, ",")))
	}
	return res, err
}

// ServeHTTP answers POST /v1/reload on the local socket: 200 and a serveReloadResult, or 409
// and the reason the file was refused (every problem, one a line).
func (r *serveReloader) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	res, err := r.Reload()
	if err != nil {
		writeJSONStatus(w, http.StatusConflict, wire.ErrorReply{Error: err.Error()})
		return
	}
	writeJSONStatus(w, http.StatusOK, res)
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// errNoServeFile is the error of a reload of a server configured by flags.
var errNoServeFile = errors.New("drfs serve was started with flags: there is no file to reload (use --config)")

// reload reads the file again. A file with any problem is refused whole: every problem is
// logged and the running configuration stays. The caller holds mu.
func (r *serveReloader) reload() (config.ServeDelta, error) {
	if r.file == "" {
		r.log.Warn("reload ignored", logging.Err(errNoServeFile))
		return config.ServeDelta{}, errNoServeFile
	}
	r.log.Info("reloading the configuration", "file", r.file)
	next, err := readServeConfig(r.file, r.logFormat)
	if err != nil {
		r.m.reloads.WithLabelValues("refused").Inc()
		var es config.Errors
		if !errors.As(err, &es) {
			r.log.Error("reload refused: the running configuration stays", logging.Err(err))
			return config.ServeDelta{}, fmt.Errorf("reload refused, the running configuration stays: %w", err)
		}
		r.log.Error("reload refused: the running configuration stays", "file", r.file, "problems", len(es))
		for _, e := range es {
			r.log.Error(e.Error())
		}
		return config.ServeDelta{}, fmt.Errorf("reload refused, the running configuration stays: %d problems in %s:\n%w", len(es), r.file, err)
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
	return d, nil
}

// askReload asks the drfs serve that holds the replica directory dir to reload its file, and
// prints what changed to w; a refused file is an error listing every problem.
func askReload(ctx context.Context, dir string, w io.Writer) error {
	sock := replica.Layout{Dir: dir}.Socket()
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://drfs/v1/reload", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("no drfs serve answers on %s (a dir changed in the file takes effect at the restart: send SIGHUP instead): %w", sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e wire.ErrorReply
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == "" {
			return fmt.Errorf("reload: HTTP %d from %s (is it a drfs serve of this version?)", resp.StatusCode, sock)
		}
		return errors.New(e.Error)
	}
	var res serveReloadResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	line := func(what string, items []string, note string) {
		if len(items) > 0 {
			fmt.Fprintf(w, "%-10s %s%s\n", what, strings.Join(items, ", "), note)
		}
	}
	line("changed", res.Volumes, "")
	line("default", res.Default, " (the retention of volumes not listed)")
	line("restart", res.Restart, " (take effect when drfs serve restarts)")
	if len(res.Volumes)+len(res.Default)+len(res.Restart) == 0 {
		fmt.Fprintln(w, "nothing changed")
	}
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
