package wire

import "time"

// Role is what a replica volume is to its primary (State.Role).
type Role string

const (
	// RoleNone is a replica that never recorded a role: a plain replica.
	RoleNone Role = ""
	// RoleReplica is a replica volume, recorded explicitly (a reversed old primary).
	RoleReplica Role = "replica"
	// RolePromoted is a replica that became the primary of a newer generation: it refuses
	// every request of a primary from then on (the old one is fenced).
	RolePromoted Role = "promoted"
)

// Action says how a generation began (GenRecord.Action).
type Action string

const (
	ActionCreate   Action = "create"   // the volume was created
	ActionPromote  Action = "promote"  // an operator promoted a replica (drfs promote)
	ActionFailover Action = "failover" // a planned failover handed the primary role over
)

// ReplicationState is the primary's view of its replication (drfs status,
// replication_state).
type ReplicationState string

const (
	StateConnecting   ReplicationState = "connecting"   // a session is being set up
	StateSyncing      ReplicationState = "syncing"      // a resync pass runs
	StateReplicating  ReplicationState = "replicating"  // change logs are shipped on schedule
	StateDisconnected ReplicationState = "disconnected" // the last session failed; retrying
	StateDegraded     ReplicationState = "degraded"     // disconnected, journal folded into dirty extents
	StateFenced       ReplicationState = "fenced"       // the replica belongs to a newer generation
	StateDemoted      ReplicationState = "demoted"      // a planned failover handed the role over
)

// GenRecord is one generation of a volume's history: it began at StartSeq when the volume was
// created or promoted. Both sides keep the list; comparing them tells who is newer and where
// two histories diverged.
type GenRecord struct {
	Generation uint64    `json:"generation"`
	StartSeq   uint64    `json:"start_seq"` // first seq written in this generation
	Time       time.Time `json:"time"`
	Host       string    `json:"host"`
	Action     Action    `json:"action"`
	Forced     bool      `json:"forced,omitempty"`
}

// Extent is a byte range of a file that must be compared with the replica and resent where it
// differs. Len < 0 means "the whole file".
type Extent struct {
	Path   string    `json:"path"`
	Off    int64     `json:"off"`
	Len    int64     `json:"len"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// PrimaryState describes the primary state directory a promotion creates for a replica's data:
// the replica decides what it holds, the primary side's volume package writes it.
type PrimaryState struct {
	State, Source string
	Name, ID      string
	Generation    uint64
	Seq           uint64 // the data is exactly the volume as of this seq
	History       []GenRecord
	Resync        []Extent // extents that differ from what the old primary may hold
}

// State is the replica's durable record of a volume: the body of GET /v1/volumes/{v} and the
// content of DIR/V/state/state.json (and of an export directory's export-state.json).
type State struct {
	VolumeID       string    `json:"volume_id"`
	Name           string    `json:"name"`
	Generation     uint64    `json:"generation"`
	Applied        uint64    `json:"applied_seq"`
	AppliedCreated time.Time `json:"applied_log_created"` // creation time of the last applied log
	AppliedAt      time.Time `json:"applied_at"`
	Consistent     bool      `json:"consistent"` // false while an initial sync or resync is incomplete
	// TolerantUntil: journal logs up to this seq overlap a resync that already reflects some
	// of their effects; they are applied tolerantly (an op whose effect is already there is
	// skipped), and the replica is consistent once it has applied past this seq.
	TolerantUntil uint64    `json:"tolerant_until,omitempty"`
	Applying      *Applying `json:"applying,omitempty"`
	Points        []Point   `json:"points"`
	LastError     string    `json:"last_error,omitempty"`

	// Failover state.
	Role        Role        `json:"role"`              // RoleReplica (or none), or RolePromoted once it became a primary
	History     []GenRecord `json:"history,omitempty"` // generations, oldest first
	PrimaryDir  string      `json:"primary_state,omitempty"`
	Diverged    []Extent    `json:"diverged,omitempty"` // set by reverse: extents the new primary must resync
	LastContact time.Time   `json:"last_contact"`       // last request from a primary
	// HandOver is set by a promote without --force while the primary is in contact: the
	// primary sees it, ships its last log and hands over with a planned failover whose key is
	// HandOverID. Both are cleared when that key is promoted, refused or aborted.
	HandOver   *time.Time `json:"hand_over_requested,omitempty"`
	HandOverID string     `json:"hand_over_id,omitempty"`
	// PromoteKey is the key of the planned failover that promoted this replica: the same
	// request again gets the same answer.
	PromoteKey string `json:"promote_key,omitempty"`
	// Promoting is set while a promotion prepares the primary state, so a crash halfway
	// leaves a state directory a retry may replace.
	Promoting *Promoting `json:"promoting,omitempty"`
	// Refused lists planned failovers this replica refused or aborted: it never promotes
	// under these keys (the newest are kept).
	Refused []RefusedPromotion `json:"refused_promotions,omitempty"`

	// BoundPrimary is the identity (site name) of the only primary this volume is served to
	// over the network: the first one that used it, or the one the operator named with
	// drfs serve --allow. "" while unbound.
	BoundPrimary string `json:"bound_primary,omitempty"`
	// Reversed marks an old primary made a replica by drfs reverse until its resync
	// completes: the new primary may then set the applied seq back to the common point and
	// overwrite its diverged changes, which this site's operator chose by reversing.
	Reversed bool `json:"reversed,omitempty"`
}

// Point is a recovery point: the replica can be rolled back to seq From-1 by undoing the logs
// from this one onwards.
//
// A resync log is kept as a point too (Resync): it covers no journal seqs, so its From is the
// applied seq before it plus one and its To the applied seq (raised to where sync-complete
// puts the replica). Consecutive points may therefore share a From; rolling back to From-1
// undoes all of them, back to the state before the first.
type Point struct {
	From      uint64    `json:"from_seq"`
	To        uint64    `json:"to_seq"`
	Created   time.Time `json:"created"` // when the primary cut the log
	Applied   time.Time `json:"applied"` // replica clock: retention counts from here
	UndoBytes int64     `json:"undo_bytes"`
	Resync    bool      `json:"resync,omitempty"`
	// Undo names the point's undo file (without .undo) and trash directory when they are not
	// the default %016x-%016x of From and To (resync points; a point whose To was raised).
	Undo string `json:"undo,omitempty"`
}

// Applying marks a log whose application began but did not commit: its undo is rolled back at
// open.
type Applying struct {
	From, To uint64
	Undo     string // undo file name in state/undo
	Trash    string // trash dir name in state/trash
}

// Promoting is a promotion under way.
type Promoting struct {
	Key      string `json:"key,omitempty"`
	StateDir string `json:"state_dir"`
}

// RefusedPromotion is a planned failover key the replica will never promote under.
type RefusedPromotion struct {
	Key    string    `json:"key"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}
