package control

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"drfs/link"
)

// The host socket is the local API of `drfs daemon`, which runs every volume of a host: one
// unix socket (the configuration's socket key, /run/drfs/drfs.sock by default), mode 0600.
//
//	GET  /status   -> HostStatus
//	POST /reload   -> ReloadResult   (409 with an Error: the new configuration was refused whole)
//
// Each volume the daemon runs also serves its own control socket in its state directory
// (drfs sync, failover, verify, seed export use it, as with drfs mount).

// Volume states in HostVolume.State.
const (
	VolumeStarting   = "starting"   // being opened, replayed or mounted
	VolumeRunning    = "running"    // mounted (and replicating, if it has a replica)
	VolumeRestarting = "restarting" // failed; started again at NextStart
	VolumeStopping   = "stopping"   // being unmounted (removed by a reload, or the daemon stops)
)

// HostStatus is what `drfs status` shows of a host running drfs daemon.
type HostStatus struct {
	Config  string        `json:"config"` // the configuration file
	Started time.Time     `json:"started"`
	Volumes []HostVolume  `json:"volumes"` // in configuration order
	Links   []link.Status `json:"links"`   // one per replica site in use
}

// HostVolume is one volume of the daemon's configuration.
type HostVolume struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Source     string `json:"source"`
	StateDir   string `json:"state_dir"`
	Mountpoint string `json:"mountpoint"`
	Site       string `json:"site,omitempty"` // replica site ("" when not replicated)
	Tier       int    `json:"tier,omitempty"`
	Schedule   string `json:"schedule,omitempty"`
	// Error is why the volume last failed (kept while it restarts), at ErrorTime.
	Error     string    `json:"error,omitempty"`
	ErrorTime time.Time `json:"error_time,omitzero"`
	Restarts  int       `json:"restarts"`
	NextStart time.Time `json:"next_start,omitzero"` // when a restarting volume is tried again
	// Status is the volume's own status while it is mounted.
	Status *Status `json:"status,omitempty"`
}

// ReloadResult says what a reload did, volume by volume.
type ReloadResult struct {
	Added     []string `json:"added"`
	Removed   []string `json:"removed"`
	Changed   []string `json:"changed"` // "name (fields: scope)"
	Untouched []string `json:"untouched"`
	Bandwidth []string `json:"bandwidth"` // sites whose link budget changed
	// Process names settings that take effect only when the daemon restarts.
	Process []string `json:"process"`
}

// HostService is what the host socket serves.
type HostService interface {
	// Status reports every volume of the host and every link.
	Status(ctx context.Context) HostStatus
	// Reload reads the configuration file again and applies it; a configuration with any
	// error is refused whole and changes nothing.
	Reload(ctx context.Context) (ReloadResult, error)
}

// HostHandler serves svc under the host socket's paths.
func HostHandler(svc HostService) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, svc.Status(r.Context()))
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		res, err := svc.Reload(r.Context())
		reply(w, res, err, http.StatusConflict)
	})
	return mux
}

// ListenHost serves svc on the host socket path. It refuses when a daemon already answers
// there, and replaces a socket left by one that died.
func ListenHost(path string, svc HostService, logger *slog.Logger) (*Server, error) {
	if _, err := NewHostClient(path).Status(context.Background()); err == nil {
		return nil, fmt.Errorf("another drfs daemon answers on %s: set socket in the configuration to run a second one", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return serveUnix(path, HostHandler(svc), logger)
}

// HostClient calls the host socket of a drfs daemon.
type HostClient struct {
	path string
	hc   *http.Client
}

// NewHostClient returns a client of the daemon answering on the socket path.
func NewHostClient(path string) *HostClient {
	return &HostClient{path: path, hc: unixClient(path)}
}

// Status asks the daemon for the status of every volume.
func (c *HostClient) Status(ctx context.Context) (HostStatus, error) {
	var st HostStatus
	return st, c.do(ctx, http.MethodGet, "/status", StatusTimeout, &st)
}

// Reload asks the daemon to read its configuration again.
func (c *HostClient) Reload(ctx context.Context) (ReloadResult, error) {
	var r ReloadResult
	return r, c.do(ctx, http.MethodPost, "/reload", 10*time.Minute, &r)
}

func (c *HostClient) do(ctx context.Context, method, path string, timeout time.Duration, out any) error {
	return call(ctx, c.hc, method, path, timeout, out, func(err error) error {
		return fmt.Errorf("%w: is drfs daemon running with socket %s? %v", ErrNotRunning, c.path, err)
	})
}
