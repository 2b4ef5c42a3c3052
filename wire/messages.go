package wire

import (
	"errors"
	"fmt"
	"time"
)

// Code names the reason of an error reply (ErrorReply.Code). The codes a primary acts on are
// refusals (see RefusedError); the others are reported.
type Code string

const (
	// CodeGap: the change log does not follow the applied seq; resend from Applied+1 (409).
	CodeGap Code = "gap"
	// CodeStale: the request comes from a superseded primary, which is fenced (409).
	CodeStale Code = "stale"
	// CodeVolume: the replica holds another volume (another volume ID) under this name (409).
	CodeVolume Code = "volume"
	// CodeHistory: the request would discard or relabel recovery points (409).
	CodeHistory Code = "history"
	// CodeRefused: a planned failover was refused, and its key never promotes (409).
	CodeRefused Code = "refused"
	// CodeHandOver: the primary is alive; it was asked to hand over (202, local socket).
	CodeHandOver Code = "hand-over"
	// CodePromote: a promotion failed; with a key the outcome is still open (500), without
	// one it was not done (409).
	CodePromote Code = "promote"
	// CodeClone: a test-failover clone failed (409, local socket).
	CodeClone Code = "clone"
	// CodeBadLog: the change log could not be decoded (400).
	CodeBadLog Code = "bad-log"
	// CodeBadRequest: a malformed request: bad volume name, JSON body, path or block size (400).
	CodeBadRequest Code = "bad-request"
	// CodeTooLarge: the change log exceeds the replica's limit (413).
	CodeTooLarge Code = "too-large"
	// CodeForbidden: the caller may not use this volume or endpoint (403).
	CodeForbidden Code = "forbidden"
	// CodeApply: the replica could not apply a valid log (a full disk, an I/O error) (500).
	CodeApply Code = "apply"
	// CodeOpen: the replica could not open the volume (500).
	CodeOpen Code = "open"
)

// ErrorReply is the body of every error response.
type ErrorReply struct {
	Error   string `json:"error"`
	Code    Code   `json:"code"`
	Applied uint64 `json:"applied_seq"`
}

// RefusedError is a replica's explicit refusal of a request; retrying the same request will
// not help (a gap is resolved by resending from Applied+1).
type RefusedError struct {
	Code    Code // gap, stale, volume, history, refused, bad-log
	Msg     string
	Applied uint64
}

func (e *RefusedError) Error() string { return fmt.Sprintf("replica refused (%s): %s", e.Code, e.Msg) }

// ErrApply means the replica was reached but could not apply a log (a full disk, an I/O
// error): retrying may help later, but not within a failover's pause.
var ErrApply = errors.New("replica: could not apply")

// AppliedReply answers a change log, resync-begin and sync-complete.
type AppliedReply struct {
	Applied uint64 `json:"applied_seq"`
}

// ResyncBegin is the body of POST /v1/volumes/{v}/resync-begin. Fields are in the order the
// protocol has always sent them (alphabetical).
type ResyncBegin struct {
	Generation uint64 `json:"generation"`
	VolumeID   string `json:"volume_id"`
}

// SyncComplete is the body of POST /v1/volumes/{v}/sync-complete. Fields are in the order the
// protocol has always sent them (alphabetical).
type SyncComplete struct {
	Exact         bool   `json:"exact"`
	Generation    uint64 `json:"generation"`
	Seq           uint64 `json:"seq"`
	TolerantUntil uint64 `json:"tolerant_until"`
	VolumeID      string `json:"volume_id"`
}

// PromoteOptions select the recovery point and how careful to be; the body of
// POST /v1/volumes/{v}/promote. Field names are the JSON keys.
type PromoteOptions struct {
	Point     *uint64    // roll back to this seq (a recovery point); nil: the latest
	Time      *time.Time // or to the newest point at or before this time
	Force     bool       // the old primary cannot be told (it is lost)
	Planned   bool       // the old primary asked for it, after shipping its last log
	ExpectSeq uint64     // planned: the seq the primary shipped last; must equal applied
	StateDir  string     // where to create the primary state (default DIR/V/primary)
	// Key names a planned failover (see the hand-over protocol in doc.go): the same request
	// again gets the same answer, and a key once refused or aborted never promotes.
	Key string
	// Abort, with Key, asks the replica never to promote under Key, or to tell that it
	// already did.
	Abort bool
}

// PromoteResult tells the operator what happened and what to run next.
type PromoteResult struct {
	Volume     string `json:"volume"`
	Generation uint64 `json:"generation"`
	Seq        uint64 `json:"seq"`
	RolledBack int    `json:"rolled_back_logs"`
	Source     string `json:"source"`
	State      string `json:"state"`
	// Aborted answers an abort: the key was not promoted and never will be.
	Aborted bool `json:"aborted,omitempty"`
}

// CloneRequest is the body of POST /v1/volumes/{v}/clone on the local socket.
type CloneRequest struct {
	Seq  uint64 `json:"seq"`
	Dest string `json:"dest"`
}

// EntryType is the type of a replica object (Entry.Type).
type EntryType string

const (
	TypeFile    EntryType = "file"
	TypeDir     EntryType = "dir"
	TypeSymlink EntryType = "symlink"
	TypeOther   EntryType = "other"
)

// Entry describes one object for resync: what the other side needs to decide what to send.
type Entry struct {
	Name   string            `json:"name,omitempty"`
	Exists bool              `json:"exists"`
	Type   EntryType         `json:"type,omitempty"` // file, dir, symlink, other
	Size   int64             `json:"size,omitempty"`
	Mode   uint32            `json:"mode,omitempty"`
	Uid    uint32            `json:"uid,omitempty"`
	Gid    uint32            `json:"gid,omitempty"`
	Ino    uint64            `json:"ino,omitempty"`
	Nlink  uint64            `json:"nlink,omitempty"`
	Target string            `json:"target,omitempty"` // symlink target
	Hashes []uint64          `json:"hashes,omitempty"` // per block of the requested size from Off, for files
	Xattrs map[string][]byte `json:"xattrs,omitempty"`
	Off    int64             `json:"off,omitempty"`
}
