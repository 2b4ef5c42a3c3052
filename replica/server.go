package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"drfs/changelog"
	"drfs/journal"
)

// Server hosts the replica side of any number of volumes under one directory and serves the
// replication protocol over HTTP (the caller wraps it in mutual TLS).
//
// Protocol (JSON unless noted; every request is idempotent by volume, generation and seqs):
//
//	GET  /v1/volumes                          -> [State] of the volumes bound to the caller
//	GET  /v1/volumes/{v}                      -> State (volume_id "" when the volume is new)
//	PUT  /v1/volumes/{v}/log                  body: a change log -> {"applied_seq": N}
//	POST /v1/volumes/{v}/resync-begin         {"volume_id","generation"}
//	POST /v1/volumes/{v}/sync-complete        {"volume_id","generation","seq"}
//	GET  /v1/volumes/{v}/describe?path=&off=&len=&block=  -> Entry
//	GET  /v1/volumes/{v}/list?path=           -> [Entry]
//	GET  /v1/volumes/{v}/points               -> [Point]
//	POST /v1/volumes/{v}/promote              PromoteOptions -> PromoteResult
//
// Access: every request over the network carries the identity of a primary (the site named
// in its client certificate, see tlsutil; "insecure" for a plaintext test setup). A volume is
// served to one primary only: the one the replica's operator pinned it to (Access.Allow,
// drfs serve --allow V=SITE), or else the first one that used it, recorded in the volume's
// state (bound_primary). Any other caller gets 403 "forbidden" on every endpoint of that
// volume. Block hashes (describe with block > 0) need blocks of at least MinHashBlock bytes,
// so a hash never stands for a guessable byte or two. After a failover the roles swap: the
// old primary's site becomes a replica (drfs reverse) whose volume starts unbound and binds to
// the new primary on first use, unless its operator pins it with --allow.
//
// Limits: a change log body may be at most Limits.MaxBodyBytes uncompressed (and its
// compressed bound); a larger one is refused with 413 "too-large" before it is read. At most
// Options.MaxConcurrentLogs change logs are received and applied at once over all volumes,
// and one at a time per volume; others wait for their turn while their request lives.
//
// A planned failover's promote carries its Key: repeated, it gets the same answer; refused
// (409 "refused") or aborted ({"Abort": true} -> {"aborted": true}), the key never promotes;
// 409 "stale" means another promotion superseded the asking primary; any other error leaves
// the outcome open and the primary asks again (see the hand-over protocol in doc.go).
//
// Errors are {"error": msg, "code": c, "applied_seq": N} with code "gap" or "stale" or
// "volume" or "history" (HTTP 409), "bad-log" (400), "too-large" (413), "forbidden" (403) or
// "apply" (500).
//
// The replica's past is its own: retention (drfs serve --keep-points, --keep-for) is set only
// there, and no request of a primary drops or relabels a recovery point. A resync log is kept
// as a point like a journal log; sync-complete never discards points and is refused
// ("history") if it would set the applied seq back over them, except on an old primary that
// this site's operator reversed; a planned promote never rolls back, and is refused while
// points younger than --keep-for exist unless this site's operator asked for the hand-over.
type Server struct {
	dir    string
	opts   Options
	limits changelog.Limits
	access Access

	mu   sync.Mutex
	vols map[string]*Volume
	m    *serverMetrics

	heavy   chan struct{}            // slots for change logs and block hashing, over all volumes
	logLock map[string]chan struct{} // one change log at a time per volume (guarded by mu)
}

// MinHashBlock is the smallest block size the network protocol hashes.
const MinHashBlock = 4 << 10

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

// SetAccess sets who may use which volume; call it before serving.
func (s *Server) SetAccess(a Access) { s.access = a }

// NewServer serves the volumes under dir.
func NewServer(dir string, opts Options, limits changelog.Limits) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
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
	v, err := OpenVolume(s.dir, name, s.opts)
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
		id, err := s.identify(r)
		if !local && err != nil {
			writeErr(w, http.StatusForbidden, "forbidden", err.Error(), 0)
			return
		}
		out := []State{}
		for _, n := range s.Names() {
			if v, err := s.Volume(n); err == nil {
				st := v.State()
				if local || s.boundTo(n, st) == id {
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
		var req struct {
			VolumeID   string `json:"volume_id"`
			Generation uint64 `json:"generation"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		s.reply(w, v, v.MarkInconsistent(req.VolumeID, req.Generation))
	}))
	mux.HandleFunc("POST /v1/volumes/{v}/sync-complete", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		var req struct {
			VolumeID   string `json:"volume_id"`
			Generation uint64 `json:"generation"`
			Seq        uint64 `json:"seq"`
			Tolerant   uint64 `json:"tolerant_until"`
			Exact      bool   `json:"exact"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		s.reply(w, v, v.SyncComplete(req.VolumeID, req.Generation, req.Seq, req.Tolerant, req.Exact))
	}))
	mux.HandleFunc("GET /v1/volumes/{v}/describe", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		q := r.URL.Query()
		off, _ := strconv.ParseInt(q.Get("off"), 10, 64)
		n, err := strconv.ParseInt(q.Get("len"), 10, 64)
		if err != nil {
			n = -1
		}
		block, _ := strconv.Atoi(q.Get("block"))
		if block < 0 || block > 16<<20 || (block > 0 && block < MinHashBlock) {
			writeErr(w, http.StatusBadRequest, "bad-request", fmt.Sprintf("bad block size %d: want 0 or %d to %d bytes", block, MinHashBlock, 16<<20), 0)
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
			writeErr(w, http.StatusBadRequest, "bad-request", err.Error(), 0)
			return
		}
		writeJSON(w, http.StatusOK, e)
	}))
	mux.HandleFunc("GET /v1/volumes/{v}/list", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		ents, err := v.List(r.URL.Query().Get("path"))
		if err != nil {
			writeErr(w, http.StatusBadRequest, "bad-request", err.Error(), 0)
			return
		}
		writeJSON(w, http.StatusOK, ents)
	}))
	mux.HandleFunc("GET /v1/volumes/{v}/points", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		writeJSON(w, http.StatusOK, v.Points())
	}))
	mux.HandleFunc("POST /v1/volumes/{v}/clone", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		if !local {
			writeErr(w, http.StatusForbidden, "forbidden", "test failover clones are taken on the replica host", 0)
			return
		}
		var req CloneRequest
		if !readJSON(w, r, &req) {
			return
		}
		if err := v.Clone(req.Seq, req.Dest); err != nil {
			writeErr(w, http.StatusConflict, "clone", err.Error(), v.State().Applied)
			return
		}
		writeJSON(w, http.StatusOK, v.State())
	}))
	mux.HandleFunc("POST /v1/volumes/{v}/promote", withVolume(func(w http.ResponseWriter, r *http.Request, v *Volume) {
		var o PromoteOptions
		if !readJSON(w, r, &o) {
			return
		}
		// Over the network only a primary's planned failover may promote (it proves
		// zero loss with ExpectSeq); anything else is an operator's decision, taken on the
		// replica host through the local socket.
		if !local && (!o.Planned || o.StateDir != "" || o.Force) {
			writeErr(w, http.StatusForbidden, "forbidden", "only a planned failover can promote over the network; run drfs promote on the replica host", v.State().Applied)
			return
		}
		var res PromoteResult
		var err error
		if o.Abort && o.Planned {
			res, err = v.AbortPromotion(o.Key)
		} else {
			res, err = v.Promote(o)
		}
		switch {
		case errors.Is(err, ErrHandOver):
			writeErr(w, http.StatusAccepted, "hand-over", err.Error(), v.State().Applied)
			return
		case errors.Is(err, ErrPromoteRefused):
			writeErr(w, http.StatusConflict, "refused", err.Error(), v.State().Applied)
			return
		case errors.Is(err, ErrStale):
			writeErr(w, http.StatusConflict, "stale", err.Error(), v.State().Applied)
			return
		case err != nil && o.Key != "":
			// Not a refusal: the failover's outcome is still open, the primary asks again.
			writeErr(w, http.StatusInternalServerError, "promote", err.Error(), v.State().Applied)
			return
		case err != nil:
			writeErr(w, http.StatusConflict, "promote", err.Error(), v.State().Applied)
			return
		case res.Aborted:
			writeJSON(w, http.StatusOK, res)
			return
		}
		s.opts.Logf("volume %s promoted to generation %d at seq %d; primary state %s", v.Name(), res.Generation, res.Seq, res.State)
		writeJSON(w, http.StatusOK, res)
	}))
	return mux
}

func (s *Server) withVolume(local bool, fn func(http.ResponseWriter, *http.Request, *Volume)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("v")
		if err := journal.ValidPath(name); err != nil || filepath.Base(name) != name {
			writeErr(w, http.StatusBadRequest, "bad-request", fmt.Sprintf("bad volume name %q", name), 0)
			return
		}
		var id string
		if !local {
			var err error
			if id, err = s.identify(r); err != nil {
				writeErr(w, http.StatusForbidden, "forbidden", err.Error(), 0)
				return
			}
			// A volume pinned to another primary is refused before it is opened (or
			// created).
			if want, ok := s.access.Allow[name]; ok && want != id {
				s.opts.Logf("volume %s: refused primary %q: pinned to %q", name, id, want)
				writeErr(w, http.StatusForbidden, "forbidden", fmt.Sprintf("volume %s is served only to primary %q (drfs serve --allow); this request comes from primary %q", name, want, id), 0)
				return
			}
		}
		v, err := s.Volume(name)
		if err != nil {
			writeErr(w, http.StatusInternalServerError, "open", err.Error(), 0)
			return
		}
		if !local {
			_, pinned := s.access.Allow[name]
			if err := v.Bind(id, pinned); errors.Is(err, ErrNotBound) {
				s.opts.Logf("volume %s: refused primary %q: %v", name, id, err)
				writeErr(w, http.StatusForbidden, "forbidden", fmt.Sprintf("%v; the replica's operator can move it with drfs serve --allow %s=%s", err, name, id), 0)
				return
			} else if err != nil {
				writeErr(w, http.StatusInternalServerError, "open", err.Error(), 0)
				return
			}
		}
		fn(w, r, v)
	}
}

// identify names the primary that sent r over the network.
func (s *Server) identify(r *http.Request) (string, error) {
	if s.access.Identify == nil {
		return "insecure", nil
	}
	id, err := s.access.Identify(r)
	if err != nil {
		return "", fmt.Errorf("not a primary's certificate: %v", err)
	}
	return id, nil
}

// boundTo is the primary volume name is served to.
func (s *Server) boundTo(name string, st State) string {
	if want, ok := s.access.Allow[name]; ok {
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
		writeErr(w, http.StatusRequestEntityTooLarge, "too-large", fmt.Sprintf("change log of %d bytes exceeds the limit of %d", r.ContentLength, maxWire), v.State().Applied)
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
		s.opts.Logf("volume %s: refused change log: %v", v.Name(), err)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) || errors.Is(err, changelog.ErrTooLarge) {
			writeErr(w, http.StatusRequestEntityTooLarge, "too-large", err.Error(), v.State().Applied)
			return
		}
		writeErr(w, http.StatusBadRequest, "bad-log", err.Error(), v.State().Applied)
		return
	}
	applied, err := v.Apply(l)
	if err != nil {
		s.opts.Logf("volume %s: change log %d-%d: %v", v.Name(), l.FromSeq, l.ToSeq, err)
		s.reply(w, v, err)
		return
	}
	s.m.applied.Inc()
	s.m.bytes.Add(float64(body.n))
	s.m.applyDur.Observe(time.Since(t0).Seconds())
	s.m.appliedSeq.WithLabelValues(v.Name()).Set(float64(applied))
	writeJSON(w, http.StatusOK, map[string]uint64{"applied_seq": applied})
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
		writeJSON(w, http.StatusOK, map[string]uint64{"applied_seq": applied})
	case code != "":
		writeErr(w, http.StatusConflict, code, err.Error(), applied)
	default:
		writeErr(w, http.StatusInternalServerError, "apply", err.Error(), applied)
	}
}

// RefusalCode names a refusal a primary must act on ("gap": resend from the applied seq,
// "stale": it was superseded, "volume": wrong volume, "history": it would discard recovery
// points), or "" for any other error.
func RefusalCode(err error) string {
	switch {
	case errors.Is(err, ErrGap):
		return "gap"
	case errors.Is(err, ErrStale):
		return "stale"
	case errors.Is(err, ErrVolumeMismatch):
		return "volume"
	case errors.Is(err, ErrHistory):
		return "history"
	}
	return ""
}

// ErrorReply is the body of an error response.
type ErrorReply struct {
	Error   string `json:"error"`
	Code    string `json:"code"`
	Applied uint64 `json:"applied_seq"`
}

func writeErr(w http.ResponseWriter, status int, code, msg string, applied uint64) {
	writeJSON(w, status, ErrorReply{Error: msg, Code: code, Applied: applied})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "bad-request", err.Error(), 0)
		return false
	}
	return true
}
