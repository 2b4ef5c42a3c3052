package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"drfs/changelog"
	"drfs/internal/logging"
	"drfs/journal"
	"drfs/wire"
)

// Server hosts the replica side of any number of volumes under one directory and serves the
// replication protocol over HTTP (the caller wraps it in mutual TLS). The protocol — every
// endpoint, its answers and error codes, who may call it, the limits and the hand-over keys —
// is documented in package wire (wire/doc.go); change the two together.
//
// The replica's past is its own: retention (drfs serve --keep-points, --keep-for, or each
// volume's own in drfs serve --config) is set only here, and no request of a primary drops or
// relabels a recovery point.
type Server struct {
	dir    string
	limits changelog.Limits
	access atomic.Pointer[Access]

	mu   sync.Mutex
	opts Options // Retention guarded by mu
	vols map[string]*Volume
	m    *serverMetrics

	heavy   chan struct{}            // slots for change logs and block hashing, over all volumes
	logLock map[string]chan struct{} // one change log at a time per volume (guarded by mu)
}

// DefaultMaxConcurrentLogs bounds the change logs a server receives at once by default.
const DefaultMaxConcurrentLogs = 4

// Access decides which primary may use a volume over the network.
type Access struct {
	// Identify names the primary that sent r, or fails if r carries no primary identity.
	// Nil: every request is from "insecure" (plaintext tests).
	Identify func(r *http.Request) (string, error)
	// Allow pins volumes to primaries (volume name -> identity), overriding a binding
	// recorded on first use.
	Allow map[string]string
}

// SetAccess sets who may use which volume. It may be called while serving (a reload): each
// request is decided by the Access of the moment it arrives. A volume that loses its Allow
// entry stays bound to the primary that used it last (State.BoundPrimary).
func (s *Server) SetAccess(a Access) { s.access.Store(&a) }

// getAccess returns the Access in force.
func (s *Server) getAccess() *Access {
	if a := s.access.Load(); a != nil {
		return a
	}
	return &Access{}
}

// SetRetention replaces Options.Retention: volumes opened from now on get their retention
// from fn, and every open volume gets its new one at once (Volume.SetRetention: the next
// change log applied prunes by it). Nil gives every volume Options.KeepPoints and KeepFor.
func (s *Server) SetRetention(fn func(volume string) (keepPoints int, keepFor time.Duration)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Retention = fn
	for name, v := range s.vols {
		v.SetRetention(s.retentionLocked(name))
	}
}

// retentionLocked is the retention of volume name by the options in force.
func (s *Server) retentionLocked(name string) (int, time.Duration) {
	if s.opts.Retention != nil {
		return s.opts.Retention(name)
	}
	return s.opts.KeepPoints, s.opts.KeepFor
}

// NewServer serves the volumes under dir.
func NewServer(dir string, opts Options, limits changelog.Limits) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	opts.Logger = logging.OrDiscard(opts.Logger)
	n := opts.MaxConcurrentLogs
	if n <= 0 {
		n = DefaultMaxConcurrentLogs
	}
	return &Server{dir: dir, opts: opts, limits: limits, vols: map[string]*Volume{}, m: newServerMetrics(),
		heavy: make(chan struct{}, n), logLock: map[string]chan struct{}{}}, nil
}

// Volume returns the named volume, opening (and creating) it on first use.
func (s *Server) Volume(name string) (*Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.vols[name]; ok {
		return v, nil
	}
	opts := s.opts
	opts.KeepPoints, opts.KeepFor = s.retentionLocked(name)
	v, err := OpenVolume(s.dir, name, opts)
	if err != nil {
		return nil, err
	}
	s.vols[name] = v
	return v, nil
}

// Names lists the volumes present under the directory.
func (s *Server) Names() []string {
	ents, _ := os.ReadDir(s.dir)
	var out []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(s.dir, e.Name(), "state")); err == nil && e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// Close closes every open volume.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for n, v := range s.vols {
		errs = append(errs, v.Close())
		delete(s.vols, n)
	}
	return errors.Join(errs...)
}

// Handler returns the protocol's HTTP handler for primaries (over the network).
func (s *Server) Handler() http.Handler { return s.handler(false) }

// LocalHandler is Handler for the operator's local socket: it also accepts unplanned
// promotions.
func (s *Server) LocalHandler() http.Handler { return s.handler(true) }

func (s *Server) handler(local bool) http.Handler {
	mux := http.NewServeMux()
	withVolume := func(fn func(http.ResponseWriter, *http.Request, *Volume)) http.HandlerFunc {
		return s.withVolume(local, fn)
	}
	mux.HandleFunc("GET /v1/volumes", func(w http.ResponseWriter, r *http.Request) {
		access := s.getAccess()
		id, err := s.identify(access, r)
		if !local && err != nil {
			writeErr(w, http.StatusForbidden, wire.CodeForbidden, err.Error(), 0)
			return
		}
		out := []wire.State{}
		for _, n := range s.Names() {
			if v, err := s.Volume(n); err == nil {
				st := v.State()
				if local || boundTo(access, n, st) == id {
					out = append(out, st)
				}
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/volumes/{v}", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		if !local {
			v.Touch() // a primary's heartbeat
		}
		writeJSON(w, http.StatusOK, v.State())
	}))
	mux.HandleFunc("PUT /v1/volumes/{v}/log", withVolume(s.putLog))
	mux.HandleFunc("POST /v1/volumes/{v}/resync-begin", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		var req wire.ResyncBegin
		if !readJSON(w, r, &req) {
			return
		}
		s.reply(w, v, v.MarkInconsistent(req.VolumeID, req.Generation))
	}))
	mux.HandleFunc("POST /v1/volumes/{v}/sync-complete", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		var req wire.SyncComplete
		if !readJSON(w, r, &req) {
			return
		}
		s.reply(w, v, v.SyncComplete(req.VolumeID, req.Generation, req.Seq, req.TolerantUntil, req.Exact))
	}))
	mux.HandleFunc("GET /v1/volumes/{v}/describe", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		q := r.URL.Query()
		off, _ := strconv.ParseInt(q.Get("off"), 10, 64)
		n, err := strconv.ParseInt(q.Get("len"), 10, 64)
		if err != nil {
			n = -1
		}
		block, _ := strconv.Atoi(q.Get("block"))
		if block < 0 || block > wire.MaxHashBlock || (block > 0 && block < wire.MinHashBlock) {
			writeErr(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("bad block size %d: want 0 or %d to %d bytes", block, wire.MinHashBlock, wire.MaxHashBlock), 0)
			return
		}
		if block > 0 {
			if !s.acquire(r, s.heavy) {
				return
			}
			defer func() { <-s.heavy }()
		}
		e, err := v.Describe(q.Get("path"), off, n, block)
		if err != nil {
			writeErr(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error(), 0)
			return
		}
		writeJSON(w, http.StatusOK, e)
	}))
	mux.HandleFunc("GET /v1/volumes/{v}/list", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		ents, err := v.List(r.URL.Query().Get("path"))
		if err != nil {
			writeErr(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error(), 0)
			return
		}
		writeJSON(w, http.StatusOK, ents)
	}))
	mux.HandleFunc("GET /v1/volumes/{v}/points", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		writeJSON(w, http.StatusOK, v.Points())
	}))
	mux.HandleFunc("POST /v1/volumes/{v}/clone", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		if !local {
			writeErr(w, http.StatusForbidden, wire.CodeForbidden, "test failover clones are taken on the replica host", 0)
			return
		}
		var req wire.CloneRequest
		if !readJSON(w, r, &req) {
			return
		}
		if err := v.Clone(req.Seq, req.Dest); err != nil {
			writeErr(w, http.StatusConflict, wire.CodeClone, err.Error(), v.State().Applied)
			return
		}
		writeJSON(w, http.StatusOK, v.State())
	}))
	mux.HandleFunc("POST /v1/volumes/{v}/promote", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		var o wire.PromoteOptions
		if !readJSON(w, r, &o) {
			return
		}
		// Over the network only a primary's planned failover may promote (it proves
		// zero loss with ExpectSeq); anything else is an operator's decision, taken on the
		// replica host through the local socket.
		if !local && (!o.Planned || o.StateDir != "" || o.Force) {
			writeErr(w, http.StatusForbidden, wire.CodeForbidden, "only a planned failover can promote over the network; run drfs promote on the replica host", v.State().Applied)
			return
		}
		var res wire.PromoteResult
		var err error
		if o.Abort && o.Planned {
			res, err = v.AbortPromotion(o.Key)
		} else {
			res, err = v.Promote(o)
		}
		switch {
		case errors.Is(err, ErrHandOver):
			writeErr(w, http.StatusAccepted, wire.CodeHandOver, err.Error(), v.State().Applied)
			return
		case errors.Is(err, ErrPromoteRefused):
			writeErr(w, http.StatusConflict, wire.CodeRefused, err.Error(), v.State().Applied)
			return
		case errors.Is(err, ErrStale):
			writeErr(w, http.StatusConflict, wire.CodeStale, err.Error(), v.State().Applied)
			return
		case err != nil && o.Key != "":
			// Not a refusal: the failover's outcome is still open, the primary asks again.
			writeErr(w, http.StatusInternalServerError, wire.CodePromote, err.Error(), v.State().Applied)
			return
		case err != nil:
			writeErr(w, http.StatusConflict, wire.CodePromote, err.Error(), v.State().Applied)
			return
		case res.Aborted:
			writeJSON(w, http.StatusOK, res)
			return
		}
		v.log.Info("volume promoted", "generation", res.Generation, "seq", res.Seq, "primary_state", res.State)
		writeJSON(w, http.StatusOK, res)
	}))
	return mux
}

func (s *Server) withVolume(local bool, fn func(http.ResponseWriter, *http.Request, *Volume)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("v")
		if err := journal.ValidPath(name); err != nil || filepath.Base(name) != name {
			writeErr(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("bad volume name %q", name), 0)
			return
		}
		// One Access decides the whole request, even if a reload replaces it meanwhile.
		access := s.getAccess()
		var id string
		if !local {
			var err error
			if id, err = s.identify(access, r); err != nil {
				writeErr(w, http.StatusForbidden, wire.CodeForbidden, err.Error(), 0)
				return
			}
			// A volume pinned to another primary is refused before it is opened (or
			// created).
			if want, ok := access.Allow[name]; ok && want != id {
				s.log().Warn("refused primary: the volume is pinned to another", "volume", name, "primary", id, "pinned", want)
				writeErr(w, http.StatusForbidden, wire.CodeForbidden, fmt.Sprintf("volume %s is served only to primary %q (drfs serve --allow, or allow in its file); this request comes from primary %q", name, want, id), 0)
				return
			}
		}
		v, err := s.Volume(name)
		if err != nil {
			writeErr(w, http.StatusInternalServerError, wire.CodeOpen, err.Error(), 0)
			return
		}
		if !local {
			_, pinned := access.Allow[name]
			if err := v.Bind(id, pinned); errors.Is(err, ErrNotBound) {
				s.log().Warn("refused primary", "volume", name, "primary", id, logging.Err(err))
				writeErr(w, http.StatusForbidden, wire.CodeForbidden, fmt.Sprintf("%v; the replica's operator can move it with drfs serve --allow %s=%s (or allow: %s for it in the file)", err, name, id, id), 0)
				return
			} else if err != nil {
				writeErr(w, http.StatusInternalServerError, wire.CodeOpen, err.Error(), 0)
				return
			}
		}
		fn(w, r, v)
	}
}

// log is the server's logger (set once by NewServer).
func (s *Server) log() *slog.Logger { return s.opts.Logger }

// identify names the primary that sent r over the network.
func (s *Server) identify(access *Access, r *http.Request) (string, error) {
	if access.Identify == nil {
		return "insecure", nil
	}
	id, err := access.Identify(r)
	if err != nil {
		return "", fmt.Errorf("not a primary's certificate: %v", err)
	}
	return id, nil
}

// boundTo is the primary volume name is served to.
func boundTo(access *Access, name string, st wire.State) string {
	if want, ok := access.Allow[name]; ok {
		return want
	}
	return st.BoundPrimary
}

// acquire takes a slot of sem, waiting while r lives; false (and the reply sent) when r ended
// first.
func (s *Server) acquire(r *http.Request, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	case <-r.Context().Done():
		return false
	}
}

// volumeLogLock is the one-slot semaphore of a volume's change logs.
func (s *Server) volumeLogLock(name string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.logLock[name]
	if !ok {
		c = make(chan struct{}, 1)
		s.logLock[name] = c
	}
	return c
}

func (s *Server) putLog(w http.ResponseWriter, r *http.Request, v *Volume) {
	lim := s.limits
	if lim.MaxBodyBytes <= 0 {
		lim.MaxBodyBytes = changelog.DefaultMaxBodyBytes
	}
	maxWire := lim.MaxBodyBytes + lim.MaxBodyBytes/8 + (1 << 20)
	if r.ContentLength > maxWire {
		s.m.rejected.Inc()
		writeErr(w, http.StatusRequestEntityTooLarge, wire.CodeTooLarge, fmt.Sprintf("change log of %d bytes exceeds the limit of %d", r.ContentLength, maxWire), v.State().Applied)
		return
	}
	one := s.volumeLogLock(v.Name())
	if !s.acquire(r, one) {
		return
	}
	defer func() { <-one }()
	if !s.acquire(r, s.heavy) {
		return
	}
	defer func() { <-s.heavy }()
	t0 := time.Now()
	body := &countingReader{r: http.MaxBytesReader(w, r.Body, maxWire)}
	l, err := changelog.Decode(body, lim)
	if err != nil {
		s.m.rejected.Inc()
		v.log.Warn("refused change log", logging.Err(err))
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) || errors.Is(err, changelog.ErrTooLarge) {
			writeErr(w, http.StatusRequestEntityTooLarge, wire.CodeTooLarge, err.Error(), v.State().Applied)
			return
		}
		writeErr(w, http.StatusBadRequest, wire.CodeBadLog, err.Error(), v.State().Applied)
		return
	}
	applied, err := v.Apply(l)
	if err != nil {
		v.log.Warn("change log not applied", "from", l.FromSeq, "to", l.ToSeq, logging.Err(err))
		s.reply(w, v, err)
		return
	}
	s.m.applied.Inc()
	s.m.bytes.Add(float64(body.n))
	s.m.applyDur.Observe(time.Since(t0).Seconds())
	s.m.appliedSeq.WithLabelValues(v.Name()).Set(float64(applied))
	writeJSON(w, http.StatusOK, wire.AppliedReply{Applied: applied})
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (s *Server) reply(w http.ResponseWriter, v *Volume, err error) {
	applied := v.State().Applied
	switch code := RefusalCode(err); {
	case err == nil:
		writeJSON(w, http.StatusOK, wire.AppliedReply{Applied: applied})
	case code != "":
		writeErr(w, http.StatusConflict, code, err.Error(), applied)
	default:
		writeErr(w, http.StatusInternalServerError, wire.CodeApply, err.Error(), applied)
	}
}

// RefusalCode names a refusal a primary must act on (wire.CodeGap: resend from the applied
// seq, wire.CodeStale: it was superseded, wire.CodeVolume: wrong volume, wire.CodeHistory: it
// would discard recovery points), or "" for any other error.
func RefusalCode(err error) wire.Code {
	switch {
	case errors.Is(err, ErrGap):
		return wire.CodeGap
	case errors.Is(err, ErrStale):
		return wire.CodeStale
	case errors.Is(err, ErrVolumeMismatch):
		return wire.CodeVolume
	case errors.Is(err, ErrHistory):
		return wire.CodeHistory
	}
	return ""
}

func writeErr(w http.ResponseWriter, status int, code wire.Code, msg string, applied uint64) {
	writeJSON(w, status, wire.ErrorReply{Error: msg, Code: code, Applied: applied})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error(), 0)
		return false
	}
	return true
}
