package shipper

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"drfs/internal/netutil"
	"drfs/wire"
)

// Target is a replica of one volume as the shipper sees it. Every call is idempotent by
// (volume, generation, seqs): a retry after a lost answer is harmless. Calls are made from the
// shipper's goroutines one at a time.
type Target interface {
	// State returns the replica's view of the volume (VolumeID "" when it holds nothing yet).
	State(ctx context.Context) (wire.State, error)
	// Send delivers an encoded change log and returns the replica's applied seq once the
	// log is durable there. A refusal is a *RefusedError.
	Send(ctx context.Context, log []byte) (uint64, error)
	// ResyncBegin tells the replica that a resync starts: it is not consistent until
	// SyncComplete.
	ResyncBegin(ctx context.Context, volumeID string, gen uint64) error
	// SyncComplete tells the replica it now holds the source state as of seq (at least), and
	// that logs up to tolerantUntil overlap what the resync copied.
	SyncComplete(ctx context.Context, volumeID string, gen, seq, tolerantUntil uint64, exact bool) error
	// Promote asks the replica to take over as the primary of generation gen+1 after this
	// primary shipped everything up to seq (a planned failover named key). The same key
	// again gets the same answer. A *RefusedError "refused" means the replica did not and
	// will never promote under key; "stale" that another promotion superseded this primary;
	// any other error leaves the outcome open.
	Promote(ctx context.Context, seq uint64, key string) (wire.PromoteResult, error)
	// AbortPromote asks the replica never to promote under key. Aborted in the result means
	// it will not; otherwise it already did and the result is the promotion's. Errors are as
	// for Promote.
	AbortPromote(ctx context.Context, key string) (wire.PromoteResult, error)
	// Describe returns the replica's entry for path, with block hashes of [off, off+n) when
	// block > 0.
	Describe(ctx context.Context, path string, off, n int64, block int) (wire.Entry, error)
	// List returns the entries of a replica directory.
	List(ctx context.Context, path string) ([]wire.Entry, error)
	// String names the target for messages.
	String() string
	// Close releases it.
	Close() error
}

// RefusedError is a replica's explicit refusal of a request (see wire.RefusedError).
type RefusedError = wire.RefusedError

// ErrReplicaApply means the replica was reached but could not apply a log (a full disk, an I/O
// error): retrying may help later, but not within a failover's pause.
var ErrReplicaApply = wire.ErrApply

// LocalOpener opens volume in the replica directory dir on this host, for file:///DIR replica
// URLs. The replica package provides one (replica.OpenLocalTarget); the caller wires it in, so
// the primary side does not depend on the replica side.
type LocalOpener func(dir, volume string, logger *slog.Logger) (Target, error)

// OpenTarget returns the target for a replica URL: https://HOST:PORT (a drfs serve, with
// mutual TLS from tlsConf), http://127.0.0.1:PORT (only with insecure, loopback only),
// file:///DIR (a replica directory on this host, applied by the same code), or export:///DIR
// (change-log files for offline transport, applied on the replica site with drfs apply).
// local opens file:// URLs; nil refuses them.
func OpenTarget(raw, volume string, tlsConf *tls.Config, insecure bool, local LocalOpener, logger *slog.Logger) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("replica URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "file":
		if u.Path == "" || u.Host != "" {
			return nil, fmt.Errorf("replica URL %q: use file:///ABSOLUTE/DIR", raw)
		}
		if local == nil {
			return nil, fmt.Errorf("replica URL %q: no replica directory can be opened here", raw)
		}
		return local(u.Path, volume, logger)
	case "export":
		if u.Path == "" || u.Host != "" {
			return nil, fmt.Errorf("replica URL %q: use export:///ABSOLUTE/DIR", raw)
		}
		return openExportTarget(u.Path, "")
	case "https":
		if tlsConf == nil {
			return nil, errors.New("an https replica needs certificates (--certs DIR)")
		}
		return newHTTPTarget(u, volume, &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}), nil
	case "http":
		if !insecure {
			return nil, fmt.Errorf("replica URL %q is plaintext: use https, or --insecure for a loopback test setup", raw)
		}
		if !netutil.IsLoopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("--insecure is only allowed with a loopback replica address, not %s", u.Hostname())
		}
		return newHTTPTarget(u, volume, &http.Transport{}), nil
	}
	return nil, fmt.Errorf("replica URL %q: scheme must be https, file, export (or http with --insecure)", raw)
}

// httpTarget speaks the replica protocol (see package wire) over HTTP(S).
type httpTarget struct {
	base   string
	c      *http.Client
	volume string
}

func newHTTPTarget(u *url.URL, volume string, tr *http.Transport) *httpTarget {
	tr.ResponseHeaderTimeout = 5 * time.Minute
	tr.IdleConnTimeout = 90 * time.Second
	base := strings.TrimSuffix(u.Scheme+"://"+u.Host+u.Path, "/")
	return &httpTarget{base: base + "/v1/volumes/" + url.PathEscape(volume), c: &http.Client{Transport: tr}, volume: volume}
}

func (t *httpTarget) String() string { return strings.TrimSuffix(t.base, "/v1/volumes/"+t.volume) }

func (t *httpTarget) Close() error {
	t.c.CloseIdleConnections()
	return nil
}

func (t *httpTarget) do(ctx context.Context, method, path string, body []byte, out any) error {
	if body == nil {
		return t.doStream(ctx, method, path, 0, nil, out)
	}
	return t.doStream(ctx, method, path, int64(len(body)), func() io.Reader { return bytes.NewReader(body) }, out)
}

// doStream is do with a body of n bytes read from a reader body returns (nil: no body); body
// is called again if the request must be sent again on a new connection.
func (t *httpTarget) doStream(ctx context.Context, method, path string, n int64, body func() io.Reader, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, nil)
	if err != nil {
		return err
	}
	if body != nil {
		req.Body = io.NopCloser(body())
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(body()), nil }
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := t.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e wire.ErrorReply
		if json.Unmarshal(b, &e) == nil && e.Code != "" {
			if resp.StatusCode == http.StatusConflict || e.Code == wire.CodeBadLog {
				return &RefusedError{Code: e.Code, Msg: e.Error, Applied: e.Applied}
			}
			if e.Code == wire.CodeApply {
				return fmt.Errorf("%w: %s", ErrReplicaApply, e.Error)
			}
			return fmt.Errorf("replica: %s (%s)", e.Error, e.Code)
		}
		return fmt.Errorf("replica: HTTP %s", resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode reply: %w", err)
		}
	}
	return nil
}

func (t *httpTarget) State(ctx context.Context) (wire.State, error) {
	var st wire.State
	return st, t.do(ctx, "GET", "", nil, &st)
}

func (t *httpTarget) Send(ctx context.Context, b []byte) (uint64, error) {
	return t.SendStream(ctx, int64(len(b)), func() io.Reader { return bytes.NewReader(b) })
}

// SendStream is Send with the log's n bytes read, while they go on the wire, from the reader
// body returns (called again for a retry on a new connection).
func (t *httpTarget) SendStream(ctx context.Context, n int64, body func() io.Reader) (uint64, error) {
	var r wire.AppliedReply
	err := t.doStream(ctx, "PUT", "/log", n, body, &r)
	return r.Applied, err
}

func (t *httpTarget) ResyncBegin(ctx context.Context, id string, gen uint64) error {
	b, _ := json.Marshal(wire.ResyncBegin{VolumeID: id, Generation: gen})
	return t.do(ctx, "POST", "/resync-begin", b, nil)
}

func (t *httpTarget) SyncComplete(ctx context.Context, id string, gen, seq, tolerant uint64, exact bool) error {
	b, _ := json.Marshal(wire.SyncComplete{VolumeID: id, Generation: gen, Seq: seq, TolerantUntil: tolerant, Exact: exact})
	return t.do(ctx, "POST", "/sync-complete", b, nil)
}

func (t *httpTarget) Promote(ctx context.Context, seq uint64, key string) (wire.PromoteResult, error) {
	var res wire.PromoteResult
	b, _ := json.Marshal(wire.PromoteOptions{Planned: true, ExpectSeq: seq, Key: key})
	return res, t.do(ctx, "POST", "/promote", b, &res)
}

func (t *httpTarget) AbortPromote(ctx context.Context, key string) (wire.PromoteResult, error) {
	var res wire.PromoteResult
	b, _ := json.Marshal(wire.PromoteOptions{Planned: true, Key: key, Abort: true})
	return res, t.do(ctx, "POST", "/promote", b, &res)
}

func (t *httpTarget) Describe(ctx context.Context, p string, off, n int64, block int) (wire.Entry, error) {
	var e wire.Entry
	q := url.Values{"path": {p}, "off": {strconv.FormatInt(off, 10)}, "len": {strconv.FormatInt(n, 10)}, "block": {strconv.Itoa(block)}}
	return e, t.do(ctx, "GET", "/describe?"+q.Encode(), nil, &e)
}

func (t *httpTarget) List(ctx context.Context, p string) ([]wire.Entry, error) {
	var out []wire.Entry
	return out, t.do(ctx, "GET", "/list?"+url.Values{"path": {p}}.Encode(), nil, &out)
}
