package replica

import (
	"bytes"
	"context"
	"drfs/wire"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Operator carries out the replica site operator's commands on one volume: through the local
// socket of the drfs serve that holds the replica directory (LocalHandler), or, when none
// runs, on the volume directly. A host daemon and the drfs command share it.
type Operator struct {
	Layout
	// Logger receives progress of work done on the volume directly; nil discards it.
	Logger *slog.Logger
	// PreparePrimary writes the primary state of a promotion done directly (Options).
	PreparePrimary func(wire.PrimaryState) error
}

// errNoServer marks a request that reached no drfs serve: the caller opens the volume
// itself instead.
var errNoServer = errors.New("replica: no drfs serve answers on the local socket")

// ErrHandOverPending means a running drfs serve found the primary alive and asked it to hand
// over: WaitHandOver waits for it. (Without a running server the request is only recorded,
// and Promote returns the volume's ErrHandOver as is: nothing carries it to the primary yet.)
var ErrHandOverPending = errors.New("replica: the primary was asked to hand over")

// ErrHandOverTimeout means the primary did not complete the hand-over the replica asked for
// within the time WaitHandOver was given.
var ErrHandOverTimeout = errors.New("replica: the primary did not hand over in time")

// HandOverRefusedError is a hand-over the primary tried and the replica refused: nothing
// changed, the primary stays the primary.
type HandOverRefusedError struct {
	ID     string // the hand-over request ID
	Reason string
}

func (e *HandOverRefusedError) Error() string {
	return fmt.Sprintf("replica: hand-over %s refused: %s", e.ID, e.Reason)
}

// localTimeout bounds a status request on the local socket, so a wedged server cannot hang
// the operator's command.
const localTimeout = 10 * time.Second

func (o Operator) client() *http.Client {
	path := o.Socket()
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

// call sends a request to the local socket and decodes a 200 reply into out. A 202 reply
// becomes ErrHandOverPending, any other its wire.ErrorReply; a request that reached no server wraps
// errNoServer.
func (o Operator) call(ctx context.Context, method, path string, in, out any) error {
	var body *bytes.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	} else {
		body = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://drfs/v1/volumes/"+o.Volume+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := o.client().Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errNoServer, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return json.NewDecoder(resp.Body).Decode(out)
	case http.StatusAccepted:
		return ErrHandOverPending
	}
	var e wire.ErrorReply
	json.NewDecoder(resp.Body).Decode(&e)
	return errors.New(e.Error)
}

func (o Operator) open() (*Volume, error) {
	return OpenVolume(o.Dir, o.Volume, Options{Logger: o.Logger, PreparePrimary: o.PreparePrimary})
}

// Promote makes the volume a primary (see Volume.Promote). It returns ErrHandOverPending when
// the primary is alive and was asked to hand over: WaitHandOver then waits for it.
func (o Operator) Promote(ctx context.Context, opts wire.PromoteOptions) (wire.PromoteResult, error) {
	var res wire.PromoteResult
	err := o.call(ctx, http.MethodPost, "/promote", opts, &res)
	if !errors.Is(err, errNoServer) {
		return res, err
	}
	v, err := o.open()
	if err != nil {
		return res, err
	}
	defer v.Close()
	return v.Promote(opts)
}

// WaitHandOver polls the drfs serve holding the volume until the primary completed the
// hand-over a Promote asked for, and returns the promotion it made (Source and State are
// where to mount the new primary). It gives up after timeout with ErrHandOverTimeout, or
// with a HandOverRefusedError when the replica refused the primary's attempt.
func (o Operator) WaitHandOver(ctx context.Context, timeout time.Duration) (wire.PromoteResult, error) {
	deadline := time.Now().Add(timeout)
	id := ""
	for time.Now().Before(deadline) {
		sctx, cancel := context.WithTimeout(ctx, localTimeout)
		var st wire.State
		err := o.call(sctx, http.MethodGet, "", nil, &st)
		cancel()
		if err == nil {
			if id == "" {
				id = st.HandOverID
			}
			for _, r := range st.Refused {
				if id != "" && r.Key == id {
					return wire.PromoteResult{}, &HandOverRefusedError{ID: id, Reason: r.Reason}
				}
			}
			if st.Role == "promoted" && len(st.History) > 0 {
				h := st.History[len(st.History)-1]
				return wire.PromoteResult{Volume: o.Volume, Generation: h.Generation, Seq: h.StartSeq - 1,
					Source: o.Data(), State: st.PrimaryDir}, nil
			}
		}
		select {
		case <-ctx.Done():
			return wire.PromoteResult{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return wire.PromoteResult{}, ErrHandOverTimeout
}

// Clone writes a copy of the volume at recovery point seq to dest/data (see Volume.Clone).
func (o Operator) Clone(ctx context.Context, seq uint64, dest string) error {
	var st wire.State
	err := o.call(ctx, http.MethodPost, "/clone", wire.CloneRequest{Seq: seq, Dest: dest}, &st)
	if !errors.Is(err, errNoServer) {
		return err
	}
	v, err := o.open()
	if err != nil {
		return err
	}
	defer v.Close()
	return v.Clone(seq, dest)
}
