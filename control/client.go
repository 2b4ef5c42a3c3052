package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"drfs/shipper"
	"drfs/volume"
)

// Client calls the control socket of the drfs serving one volume.
type Client struct {
	state string
	hc    *http.Client
}

// NewClient returns a client of the drfs using state directory state.
func NewClient(state string) *Client {
	return &Client{state: state, hc: unixClient(SocketPath(state))}
}

// unixClient is an HTTP client whose every request goes to the unix socket path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}}
}

// waitGrace is how much longer than the server's own bound a client waits for the answer of
// an operation that waits, so the server's answer (not a client timeout) ends it.
const waitGrace = time.Minute

// do sends a request and decodes the reply into out, bounded by timeout (0: only by ctx). A
// reply carrying an error becomes an *Error; a request that reached no drfs matches
// ErrNotRunning.
func (c *Client) do(ctx context.Context, method, path string, timeout time.Duration, out any) error {
	return call(ctx, c.hc, method, path, timeout, out, func(err error) error {
		return &notRunningError{state: c.state, err: err}
	})
}

// call is one request of a control client over hc; unreachable wraps the error of a request
// that reached no server.
func call(ctx context.Context, hc *http.Client, method, path string, timeout time.Duration, out any, unreachable func(error) error) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://drfs"+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return unreachable(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var e Error
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return &e
	}
	return json.Unmarshal(b, out)
}

// Status asks for the volume's status, giving up after StatusTimeout so a wedged daemon cannot
// hang the caller.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/status", StatusTimeout, &st)
	return st, err
}

// Sync ships everything journaled so far and waits up to timeout (0: the server's default)
// for the replica's acknowledgement.
func (c *Client) Sync(ctx context.Context, timeout time.Duration) (SyncResult, error) {
	var r SyncResult
	err := c.do(ctx, http.MethodPost, "/sync?"+timeoutQuery(timeout), bound(timeout, DefaultSyncTimeout), &r)
	return r, err
}

// Failover runs a planned failover, pausing guests at most timeout (0: the server's
// default). It runs to its end on the server even if this call gives up.
func (c *Client) Failover(ctx context.Context, timeout time.Duration) (shipper.FailoverResult, error) {
	var r shipper.FailoverResult
	err := c.do(ctx, http.MethodPost, "/failover?"+timeoutQuery(timeout), bound(timeout, DefaultFailoverTimeout), &r)
	return r, err
}

// Resolve ends a failover left in doubt; force takes writes again without the replica's answer.
func (c *Client) Resolve(ctx context.Context, force bool) (shipper.ResolveResult, error) {
	var r shipper.ResolveResult
	path := "/failover-resolve"
	if force {
		path += "?force=1"
	}
	err := c.do(ctx, http.MethodPost, path, ResolveTimeout+waitGrace, &r)
	return r, err
}

// Verify compares the volume with its replica. It takes as long as the comparison does: only
// ctx bounds it.
func (c *Client) Verify(ctx context.Context) (shipper.VerifyResult, error) {
	var r shipper.VerifyResult
	err := c.do(ctx, http.MethodPost, "/verify", 0, &r)
	return r, err
}

// SeedExport writes a consistent copy of the volume to dir (absolute, on the daemon's host).
// It takes as long as the copy does: only ctx bounds it.
func (c *Client) SeedExport(ctx context.Context, dir string) (SeedExportResult, error) {
	var r SeedExportResult
	err := c.do(ctx, http.MethodPost, "/seed-export?"+url.Values{"dir": {dir}}.Encode(), 0, &r)
	return r, err
}

func timeoutQuery(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return url.Values{"timeout": {d.String()}}.Encode()
}

// bound is the client's limit for an operation the server bounds by timeout (or def).
func bound(timeout, def time.Duration) time.Duration {
	if timeout <= 0 {
		timeout = def
	}
	return timeout + waitGrace
}

// Running reports whether a drfs answers on the control socket of state.
func Running(ctx context.Context, state string) bool {
	_, err := NewClient(state).Status(ctx)
	return !errors.Is(err, ErrNotRunning)
}

// ReadStatus reports the status of the volume using state directory state: from the drfs
// serving it, or, when the volume is not mounted, from the state directory.
func ReadStatus(ctx context.Context, state string) (Status, error) {
	st, err := NewClient(state).Status(ctx)
	if err == nil {
		return st, nil
	}
	if !errors.Is(err, ErrNotRunning) {
		return Status{}, fmt.Errorf("read status from the running drfs: %w", err)
	}
	vs, err := volume.ReadStatus(state)
	if errors.Is(err, volume.ErrLocked) {
		return Status{}, fmt.Errorf("drfs is running on %s but its control socket does not answer: %w", state, err)
	}
	if err != nil {
		return Status{}, err
	}
	return Status{Volume: vs}, nil
}
