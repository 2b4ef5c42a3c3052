package shipper

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"drfs/changelog"
	"drfs/internal/netutil"
	"drfs/replica"
)

// Target is a replica of one volume as the shipper sees it. Every call is idempotent by
// (volume, generation, seqs): a retry after a lost answer is harmless. Calls are made from the
// shipper's goroutines one at a time.
type Target interface {
	// State returns the replica's view of the volume (VolumeID "" when it holds nothing yet).
	State(ctx context.Context) (replica.State, error)
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
	Promote(ctx context.Context, seq uint64, key string) (replica.PromoteResult, error)
	// AbortPromote asks the replica never to promote under key. Aborted in the result means
	// it will not; otherwise it already did and the result is the promotion's. Errors are as
	// for Promote.
	AbortPromote(ctx context.Context, key string) (replica.PromoteResult, error)
	// Describe returns the replica's entry for path, with block hashes of [off, off+n) when
	// block > 0.
	Describe(ctx context.Context, path string, off, n int64, block int) (replica.Entry, error)
	// List returns the entries of a replica directory.
	List(ctx context.Context, path string) ([]replica.Entry, error)
	// String names the target for messages.
	String() string
	// Close releases it.
	Close() error
}

// RefusedError is a replica's explicit refusal of a request; retrying the same request will
// not help (a gap is resolved by resending from Applied+1).
type RefusedError struct {
	Code    string // gap, stale, volume, bad-log, apply
	Msg     string
	Applied uint64
}

func (e *RefusedError) Error() string { return fmt.Sprintf("replica refused (%s): %s", e.Code, e.Msg) }

// ErrReplicaApply means the replica was reached but could not apply a log (a full disk, an I/O
// error): retrying may help later, but not within a failover's pause.
var ErrReplicaApply = errors.New("replica: could not apply")

// OpenTarget returns the target for a replica URL: https://HOST:PORT (a drfs serve, with
// mutual TLS from tlsConf), http://127.0.0.1:PORT (only with insecure, loopback only),
// file:///DIR (a replica directory on this host, applied by the same code), or export:///DIR
// (change-log files for offline transport, applied on the replica site with drfs apply).
func OpenTarget(raw, volume string, tlsConf *tls.Config, insecure bool, logf func(string, ...any)) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("replica URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "file":
		if u.Path == "" || u.Host != "" {
			return nil, fmt.Errorf("replica URL %q: use file:///ABSOLUTE/DIR", raw)
		}
		v, err := replica.OpenVolume(u.Path, volume, replica.Options{Logf: logf})
		if err != nil {
			return nil, err
		}
		return &localTarget{v: v, dir: u.Path}, nil
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

// localTarget applies logs to a replica directory on this host.
type localTarget struct {
	v   *replica.Volume
	dir string
}

func (t *localTarget) State(context.Context) (replica.State, error) {
	t.v.Touch()
	return t.v.State(), nil
}

func (t *localTarget) Send(_ context.Context, b []byte) (uint64, error) {
	l, err := changelog.Unmarshal(b, changelog.Limits{})
	if err != nil {
		return t.v.State().Applied, &RefusedError{Code: "bad-log", Msg: err.Error(), Applied: t.v.State().Applied}
	}
	applied, err := t.v.Apply(l)
	return applied, localErr(err, applied)
}

func localErr(err error, applied uint64) error {
	if code := replica.RefusalCode(err); code != "" {
		return &RefusedError{Code: code, Msg: err.Error(), Applied: applied}
	}
	return err
}

func (t *localTarget) ResyncBegin(_ context.Context, id string, gen uint64) error {
	return localErr(t.v.MarkInconsistent(id, gen), t.v.State().Applied)
}

func (t *localTarget) SyncComplete(_ context.Context, id string, gen, seq, tolerant uint64, exact bool) error {
	return localErr(t.v.SyncComplete(id, gen, seq, tolerant, exact), t.v.State().Applied)
}

func (t *localTarget) Promote(_ context.Context, seq uint64, key string) (replica.PromoteResult, error) {
	res, err := t.v.Promote(replica.PromoteOptions{Planned: true, ExpectSeq: seq, Key: key})
	return res, promoteErr(err)
}

func (t *localTarget) AbortPromote(_ context.Context, key string) (replica.PromoteResult, error) {
	res, err := t.v.AbortPromotion(key)
	return res, promoteErr(err)
}

// promoteErr maps a local replica's promotion error as the HTTP server does.
func promoteErr(err error) error {
	switch {
	case errors.Is(err, replica.ErrPromoteRefused):
		return &RefusedError{Code: "refused", Msg: err.Error()}
	case errors.Is(err, replica.ErrStale):
		return &RefusedError{Code: "stale", Msg: err.Error()}
	}
	return err
}

func (t *localTarget) Describe(_ context.Context, p string, off, n int64, block int) (replica.Entry, error) {
	return t.v.Describe(p, off, n, block)
}

func (t *localTarget) List(_ context.Context, p string) ([]replica.Entry, error) { return t.v.List(p) }
func (t *localTarget) String() string                                            { return "file://" + t.dir }
func (t *localTarget) Close() error                                              { return t.v.Close() }

// httpTarget speaks the replica protocol (see replica.Server) over HTTP(S).
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
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
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
		var e replica.ErrorReply
		if json.Unmarshal(b, &e) == nil && e.Code != "" {
			if resp.StatusCode == http.StatusConflict || e.Code == "bad-log" {
				return &RefusedError{Code: e.Code, Msg: e.Error, Applied: e.Applied}
			}
			if e.Code == "apply" {
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

func (t *httpTarget) State(ctx context.Context) (replica.State, error) {
	var st replica.State
	return st, t.do(ctx, "GET", "", nil, &st)
}

func (t *httpTarget) Send(ctx context.Context, b []byte) (uint64, error) {
	var r struct {
		Applied uint64 `json:"applied_seq"`
	}
	err := t.do(ctx, "PUT", "/log", b, &r)
	return r.Applied, err
}

func (t *httpTarget) ResyncBegin(ctx context.Context, id string, gen uint64) error {
	b, _ := json.Marshal(map[string]any{"volume_id": id, "generation": gen})
	return t.do(ctx, "POST", "/resync-begin", b, nil)
}

func (t *httpTarget) SyncComplete(ctx context.Context, id string, gen, seq, tolerant uint64, exact bool) error {
	b, _ := json.Marshal(map[string]any{"volume_id": id, "generation": gen, "seq": seq, "tolerant_until": tolerant, "exact": exact})
	return t.do(ctx, "POST", "/sync-complete", b, nil)
}

func (t *httpTarget) Promote(ctx context.Context, seq uint64, key string) (replica.PromoteResult, error) {
	var res replica.PromoteResult
	b, _ := json.Marshal(replica.PromoteOptions{Planned: true, ExpectSeq: seq, Key: key})
	return res, t.do(ctx, "POST", "/promote", b, &res)
}

func (t *httpTarget) AbortPromote(ctx context.Context, key string) (replica.PromoteResult, error) {
	var res replica.PromoteResult
	b, _ := json.Marshal(replica.PromoteOptions{Planned: true, Key: key, Abort: true})
	return res, t.do(ctx, "POST", "/promote", b, &res)
}

func (t *httpTarget) Describe(ctx context.Context, p string, off, n int64, block int) (replica.Entry, error) {
	var e replica.Entry
	q := url.Values{"path": {p}, "off": {strconv.FormatInt(off, 10)}, "len": {strconv.FormatInt(n, 10)}, "block": {strconv.Itoa(block)}}
	return e, t.do(ctx, "GET", "/describe?"+q.Encode(), nil, &e)
}

func (t *httpTarget) List(ctx context.Context, p string) ([]replica.Entry, error) {
	var out []replica.Entry
	return out, t.do(ctx, "GET", "/list?"+url.Values{"path": {p}}.Encode(), nil, &out)
}
