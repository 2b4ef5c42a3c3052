// Package wire is the replication protocol between a primary (package shipper, on top of
// package volume) and a replica (package replica, served by drfs serve): the messages both
// sides exchange, the roles, states and error codes they name, the shared domain types
// (generation records, extents) and the block hashing both compute. It imports neither side.
//
// # Transport and access
//
// The replica serves HTTP/2 over mutual TLS (package tlsutil). A request over the network
// carries the identity of a primary: the site in its client certificate's drfs://SITE/primary
// URI (a certificate of another role is refused); a plaintext test setup (drfs serve
// --insecure, loopback only) calls every client "insecure".
//
// A volume is served to one primary only: the one the replica's operator pinned it to
// (drfs serve --allow V=SITE, or allow in the volume's entry of drfs serve --config), or else
// the first one that used it, recorded durably in the volume's state (State.BoundPrimary,
// trust on first use). Any other caller gets 403 "forbidden" on every endpoint of that volume;
// a volume pinned elsewhere is refused before it is opened or created. A reload of the file
// (SIGHUP) moves a pin at once: the next request of the old primary is refused, the new one's
// rebinds the volume; a pin removed leaves the volume bound to the primary that used it last. After a failover the roles swap: the old primary's site becomes a
// replica (drfs reverse) whose volume starts unbound and binds to the new primary on first
// use, unless its operator pins it.
//
// The same handler is served to the replica's operator on the unix socket DIR/drfs-serve.sock
// (mode 0600). There no identity is needed or recorded, GET /v1/volumes lists every volume,
// a state request is not a primary's heartbeat, and two things only an operator may do are
// allowed: test-failover clones and promotions that are not a primary's planned failover.
// drfs serve adds POST /v1/reload there (drfs serve --config FILE --reload): 200 with what
// changed, or 409 ErrorReply listing every problem of a refused file.
//
// # Endpoints
//
// JSON bodies unless noted; {v} is a volume name (one path element). Every request is
// idempotent by volume ID, generation and seqs: a retry after a lost answer is harmless.
//
//	GET  /v1/volumes
//	    -> 200 []State of the volumes bound to the caller (every volume on the local socket).
//	    403 forbidden: no primary identity.
//
//	GET  /v1/volumes/{v}
//	    -> 200 State (VolumeID "" while the replica holds nothing of the volume; the volume
//	    is created on first use). Over the network it is the primary's heartbeat
//	    (State.LastContact), and it carries a hand-over request (HandOverID).
//
//	PUT  /v1/volumes/{v}/log          body: one change log (changelog/doc.go), binary
//	    -> 200 AppliedReply once the log is durable. A journal log already applied
//	    (ToSeq <= applied) is a no-op answered with the applied seq.
//	    409 gap (FromSeq is not applied+1: resend from applied_seq+1), stale, volume;
//	    400 bad-log (undecodable); 413 too-large; 500 apply (valid, but could not be
//	    applied: rolled back, retry later).
//
//	POST /v1/volumes/{v}/resync-begin  ResyncBegin
//	    -> 200 AppliedReply; the replica is not consistent until sync-complete.
//	    409 stale, volume; 500 apply (the state could not be recorded).
//
//	POST /v1/volumes/{v}/sync-complete SyncComplete
//	    -> 200 AppliedReply. The replica holds the primary's source as of Seq at least;
//	    journal logs up to TolerantUntil overlap what the resync copied and are applied
//	    tolerantly; Exact sets the applied seq to Seq even if it was higher (after a
//	    reverse).
//	    409 stale, volume, history (Exact would set the applied seq back over recovery
//	    points, except on an old primary this site's operator reversed); 500 apply.
//
//	GET  /v1/volumes/{v}/describe?path=P&off=O&len=N&block=B
//	    -> 200 Entry of P (Exists false if it is missing); for a file with B > 0, the hashes
//	    of its B-byte blocks in [O, O+N) (len absent or invalid: to the end; see HashBlocks).
//	    400 bad-request: B not 0 and not MinHashBlock..MaxHashBlock, a path that escapes
//	    the tree, or an error reading it.
//
//	GET  /v1/volumes/{v}/list?path=P
//	    -> 200 []Entry of directory P (Name, Exists, Type, Ino, Nlink, Size).
//	    400 bad-request.
//
//	GET  /v1/volumes/{v}/points
//	    -> 200 []Point, the recovery points, oldest first.
//
//	POST /v1/volumes/{v}/clone         CloneRequest            (local socket only)
//	    -> 200 State; a copy of the tree as of Seq (a recovery point or the applied seq)
//	    written to Dest/data (drfs test-failover). 403 forbidden over the network; 409 clone.
//
//	POST /v1/volumes/{v}/promote       PromoteOptions
//	    -> 200 PromoteResult, or {"aborted": true, ...} for an abort.
//	    Over the network only a primary's planned failover is accepted: Planned, with
//	    ExpectSeq and Key (or Key and Abort), no StateDir, no Force (else 403 forbidden).
//	    202 hand-over (local socket, no Force: the primary is in contact and was asked to
//	    hand over); 409 refused (keyed: the key never promotes), 409 stale (another
//	    promotion superseded the asking primary, or the replica was already promoted under
//	    another key); 500 promote (keyed: the outcome is open, ask again); 409 promote
//	    (no key: nothing was done).
//
// Every {v} endpoint also answers 400 bad-request (a bad volume name or JSON body),
// 403 forbidden (see access) and 500 open (the volume could not be opened).
//
// # Errors
//
// An error is an ErrorReply {"error": message, "code": Code, "applied_seq": N}, N being the
// replica's applied seq where the volume was consulted (0 otherwise). The codes, with their
// HTTP status: gap, stale, volume, history, refused, clone, promote (409); hand-over (202);
// bad-log, bad-request (400); forbidden (403); too-large (413); apply, open, promote (500).
// A primary treats 409 answers and bad-log as refusals (RefusedError): retrying the same
// request does not help; "apply" as ErrApply; anything else as transient.
//
// A request of a primary at a generation older than the replica's, or any primary's request
// once the replica was promoted, is stale: the message names the promotion (generation, host,
// time, seq), so the fenced primary can say why it stopped.
//
// # Limits
//
// A change log body may be at most changelog.Limits.MaxBodyBytes uncompressed (default
// changelog.DefaultMaxBodyBytes) and MaxBodyBytes + MaxBodyBytes/8 + 1 MiB on the wire; a
// larger Content-Length is refused with 413 before the body is read, a body that grows past
// either bound while it is decoded too. JSON request bodies are at most 1 MiB. At most
// drfs serve --max-concurrent-logs change logs are received and applied at once over all volumes
// (default 4), one at a time per volume; describe with block hashes shares those slots.
// Requests wait for a slot while they live.
//
// # Recovery points and retention
//
// The replica's past is its own: retention (drfs serve --keep-points, --keep-for, or per
// volume keep-points and keep-for in drfs serve --config) is set only there, and no request of
// a primary drops or relabels a recovery point. Points are pruned only as a log is applied, by
// the retention in force then: a reload that narrows it prunes nothing by itself, and the
// points inside the new retention stay protected. A resync log is kept
// as a point like a journal log; sync-complete never discards points; a planned promote never
// rolls back (a Point or Time is refused), and is refused while points younger than
// --keep-for exist, unless this site's operator asked for the hand-over (the refusal's message
// says it would discard recovery points; keyed, its code is "refused").
// Promote --time picks a point by the replica's own clock (Point.Applied), never by the times
// a primary stamps on its logs.
//
// # Planned failover and hand-over keys
//
// The primary's side of the protocol (its states DRAINING, PROMOTING, IN-DOUBT, DEMOTED) is
// described in shipper/doc.go; the replica's side is:
//
//   - Promote {Planned, ExpectSeq, Key}: promotes only if the replica applied exactly
//     ExpectSeq and is consistent. The promotion (generation G+1, Role "promoted",
//     PromoteKey) is durable before the reply; the same key again gets the same
//     PromoteResult; another key gets 409 stale.
//   - Any refusal of a keyed promote is recorded first (State.Refused, the newest 64 keys):
//     the key never promotes, even if a delayed copy of the request arrives. A failure that
//     is not a refusal (500 promote) leaves the outcome open.
//   - Abort {Planned, Key, Abort}: if the replica promoted under Key, the answer is that
//     promotion's result (the primary steps down); otherwise Key is recorded as refused and
//     the answer is {"aborted": true} (the primary resumes). The answer never changes.
//   - drfs promote without --force while a primary was heard from in the last 60 s does not
//     promote over its head: it sets State.HandOver and a request ID "ho-…" (HandOverID),
//     answered 202 hand-over. The primary sees the ID in its heartbeat (GET /v1/volumes/{v},
//     every second), ships its last log and runs a planned failover whose key is that ID.
//     A request no primary acted on within 90 s is replaced by a new ID on the next
//     drfs promote.
//
// # Block hashes
//
// HashBlocks is the xxhash64 of each block, holes read as zeros; both sides compute it the
// same way, so a resync sends only the blocks whose hashes differ. Whole files are compared in
// DefaultBlockSize blocks, known changed extents in FineBlockSize blocks; the network never
// hashes blocks smaller than MinHashBlock, so a hash never stands for a guessable byte or two.
//
// # Files
//
// State is also the replica's durable record, DIR/V/state/state.json (written indented,
// replaced atomically), and an export directory's export-state.json. The golden files under
// testdata/wire are the compatibility contract for both.
package wire
