// Package control is the local API of a mounted primary volume: an HTTP server on a unix
// socket in the volume's state directory, and a typed client with one call per operation.
// The drfs commands (status, sync, failover, verify, seed export) are its clients; the
// process that mounts the volume serves it.
//
// Protocol (JSON replies; the socket is the access control: mode 0600, owned by the user
// running drfs):
//
//	GET  /status                          -> Status
//	POST /sync?timeout=D                  -> SyncResult         (error: 504)
//	POST /failover?timeout=D&key=K        -> shipper.FailoverResult
//	POST /failover-resolve[?force=1]      -> shipper.ResolveResult
//	POST /verify                          -> shipper.VerifyResult
//	POST /seed-export?dir=DIR             -> SeedExportResult
//
// An operation that fails answers 409 (504 for sync) with an Error. A failover runs to its
// end even when the client goes away, since stopping it halfway would only leave it in doubt.
package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"drfs/shipper"
	"drfs/volume"
)

// SocketName is the name, inside the state directory, of the unix socket on which a running
// drfs answers local commands.
const SocketName = "drfs.sock"

// SocketPath is the control socket of the volume whose state directory is state.
func SocketPath(state string) string { return filepath.Join(state, SocketName) }

// Default bounds of the operations that wait, when the client names none.
const (
	DefaultSyncTimeout     = 10 * time.Minute
	DefaultFailoverTimeout = 2 * time.Minute
	ResolveTimeout         = 30 * time.Second
	StatusTimeout          = 10 * time.Second
)

// Status is what `drfs status` shows of a primary: the volume, and its replication when the
// volume is mounted with a replica. On the wire it is one flat object, the replication's
// fields overriding the volume's (generation, acked_seq, replica), but for an empty
// replication error which leaves the volume's.
type Status struct {
	Volume      volume.Status
	Replication *shipper.Status // nil: not replicating (no replica, or not mounted)
}

// MarshalJSON writes the flat object.
func (s Status) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	merge := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var part map[string]any
		if err := json.Unmarshal(b, &part); err != nil {
			return err
		}
		for k, x := range part {
			if k == "last_error" && x == "" && m[k] != nil && m[k] != "" {
				continue
			}
			m[k] = x
		}
		return nil
	}
	if err := merge(s.Volume); err != nil {
		return nil, err
	}
	if s.Replication != nil {
		if err := merge(s.Replication); err != nil {
			return nil, err
		}
	}
	return json.Marshal(m)
}

// replicationKey is a field only the replication part has: its presence tells that part is
// there.
const replicationKey = "replication_state"

// UnmarshalJSON reads the flat object.
func (s *Status) UnmarshalJSON(b []byte) error {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return err
	}
	*s = Status{}
	if err := json.Unmarshal(b, &s.Volume); err != nil {
		return err
	}
	if _, ok := keys[replicationKey]; ok {
		s.Replication = &shipper.Status{}
		return json.Unmarshal(b, s.Replication)
	}
	return nil
}

// SyncResult answers a sync: the replica acknowledged everything up to AckedSeq.
type SyncResult struct {
	AckedSeq uint64 `json:"acked_seq"`
}

// SeedExportResult answers a seed export: a consistent copy at Seq, of Files files.
type SeedExportResult struct {
	Seq   uint64 `json:"seq"`
	Files int    `json:"files"`
}

// Error is the reply of an operation that failed. A failover also tells how long guests were
// paused, and whether it is in doubt; a sync how far the replica got.
type Error struct {
	Message  string        `json:"error"`
	InDoubt  bool          `json:"in_doubt,omitempty"`
	Pause    time.Duration `json:"pause_ns,omitempty"`
	AckedSeq uint64        `json:"acked_seq,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Unwrap makes a failover in doubt match shipper.ErrInDoubt.
func (e *Error) Unwrap() error {
	if e.InDoubt {
		return shipper.ErrInDoubt
	}
	return nil
}

// ErrNotRunning matches the error of a call that reached no drfs: nothing serves the
// volume's control socket (the volume is not mounted, or its drfs does not answer).
var ErrNotRunning = errors.New("control: no drfs answers on the control socket")

type notRunningError struct {
	state string
	err   error
}

func (e *notRunningError) Error() string {
	return fmt.Sprintf("is drfs mounted with --state %s? %v", e.state, e.err)
}

func (e *notRunningError) Unwrap() []error { return []error{ErrNotRunning, e.err} }
