package control

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"drfs/internal/logging"
	"drfs/shipper"
)

// Service is what the control socket serves for one volume. Each method answers one
// operation; the server bounds the time of those that wait (see the Default timeouts) and
// turns an error into an Error reply (an *Error returned is sent as is).
type Service interface {
	// Status reports the volume and its replication.
	Status(ctx context.Context) Status
	// Sync ships everything journaled so far and waits for the replica's acknowledgement.
	Sync(ctx context.Context) (SyncResult, error)
	// Failover switches roles with the replica without loss (key: "" for a new failover).
	// Its result is meaningful on failure too (the pause).
	Failover(ctx context.Context, key string) (shipper.FailoverResult, error)
	// Resolve ends a failover left in doubt; force takes writes again without the replica's
	// answer.
	Resolve(ctx context.Context, force bool) (shipper.ResolveResult, error)
	// Verify compares the volume with its replica.
	Verify(ctx context.Context) (shipper.VerifyResult, error)
	// SeedExport writes a consistent copy of the volume to dir, for an offline first copy.
	SeedExport(ctx context.Context, dir string) (SeedExportResult, error)
}

// Handler serves svc under the protocol's paths.
func Handler(svc Service) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, svc.Status(r.Context()))
	})
	mux.HandleFunc("POST /sync", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeoutParam(r, DefaultSyncTimeout))
		defer cancel()
		res, err := svc.Sync(ctx)
		reply(w, res, err, http.StatusGatewayTimeout)
	})
	mux.HandleFunc("POST /failover", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), timeoutParam(r, DefaultFailoverTimeout))
		defer cancel()
		res, err := svc.Failover(ctx, r.URL.Query().Get("key"))
		reply(w, res, err, http.StatusConflict)
	})
	mux.HandleFunc("POST /failover-resolve", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ResolveTimeout)
		defer cancel()
		res, err := svc.Resolve(ctx, r.URL.Query().Get("force") == "1")
		reply(w, res, err, http.StatusConflict)
	})
	mux.HandleFunc("POST /verify", func(w http.ResponseWriter, r *http.Request) {
		res, err := svc.Verify(r.Context())
		reply(w, res, err, http.StatusConflict)
	})
	mux.HandleFunc("POST /seed-export", func(w http.ResponseWriter, r *http.Request) {
		res, err := svc.SeedExport(r.Context(), r.URL.Query().Get("dir"))
		reply(w, res, err, http.StatusConflict)
	})
	return mux
}

func timeoutParam(r *http.Request, def time.Duration) time.Duration {
	d, _ := time.ParseDuration(r.URL.Query().Get("timeout"))
	if d <= 0 {
		return def
	}
	return d
}

// reply writes res, or err as an Error with errStatus.
func reply[T any](w http.ResponseWriter, res T, err error, errStatus int) {
	if err == nil {
		writeJSON(w, http.StatusOK, res)
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Message: err.Error(), InDoubt: errors.Is(err, shipper.ErrInDoubt)}
		switch r := any(res).(type) {
		case shipper.FailoverResult:
			e.Pause = r.Pause
		case SyncResult:
			e.AckedSeq = r.AckedSeq
		}
	}
	writeJSON(w, errStatus, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Server is a control socket being served.
type Server struct {
	hs *http.Server
}

// Listen serves svc on the control socket of state directory state, which the caller holds
// (its lock): a socket left by an unclean stop is replaced. Only the socket's owner may
// connect.
func Listen(state string, svc Service, logger *slog.Logger) (*Server, error) {
	return serveUnix(SocketPath(state), Handler(svc), logger)
}

// serveUnix serves h on a new unix socket at path (replacing one left there), mode 0600.
func serveUnix(path string, h http.Handler, logger *slog.Logger) (*Server, error) {
	logger = logging.OrDiscard(logger)
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("control socket", "path", path, logging.Err(err))
		}
	}()
	return &Server{hs: hs}, nil
}

// Close stops serving and closes the socket.
func (s *Server) Close() error { return s.hs.Close() }
