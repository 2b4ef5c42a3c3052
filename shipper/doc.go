package shipper

// # Planned failover: the hand-over protocol
//
// A planned failover moves the primary role of a volume from this side (P, generation G) to
// its replica (R) with zero loss. It is one protocol whose steps are idempotent and resumable,
// so that at every instant at most one side accepts guest writes, whatever message is lost,
// and the guests pause once, for at most the caller's bound (drfs failover --timeout, or
// HandOverPause for a hand-over R asked for).
//
// Every failover has a key: a random "fo-…" for drfs failover --planned, the replica's
// request ID "ho-…" for a hand-over asked with drfs promote (without --force). P acts on each
// request ID at most once (KeyHandOverSeen), however often its heartbeat sees it.
//
// States of P (volume record keyHandOver, role record keyRole in the metadata store):
//
//	PRIMARY ──pause guests──► DRAINING ──record HandOver{key,G,N}──► PROMOTING
//	   ▲                         │                                     │ ask R: promote(key, N)
//	   │ drain failed, or R      │                                     │ (again on a lost request
//	   │ cannot apply: resume    │                                     │  or reply, until the bound)
//	   └─────────────────────────┘                                     │
//	   ▲                                                               ├─ promoted ─► DEMOTED
//	   │ R answers "refused" (key dead): clear HandOver, resume        │  (role recorded and HandOver
//	   └───────────────────────────────────────────────────────────────┤   cleared in one transaction)
//	                                                                   └─ no answer ─► IN-DOUBT
//	IN-DOUBT ──ask R: abort(key)──► "aborted" (key dead): PRIMARY, writes resume
//	                            └─► "promoted under key", or "stale": DEMOTED
//
//   - DRAINING: guests are paused (the volume's operation lock) and the last log, up to seq N,
//     is shipped. A replica that answers that it cannot apply ends the drain at once. Nothing
//     was asked of R yet, so a failure here simply resumes; R is told to abort the key so a
//     waiting drfs promote learns the outcome.
//   - PROMOTING: HandOver{key, G, N} is durable in P's metadata before R is asked. From here a
//     restart of P (kill -9, power loss) opens the volume fenced: every mutation fails with
//     EROFS until the outcome is known; it never comes back writable on its own guess.
//   - R promotes at most once per key and records the promotion (generation G+1, PromoteKey)
//     durably before it replies; the same request again gets the same result. Any refusal of
//     a keyed promote is recorded first (State.Refused), so the key never promotes later, even
//     if a delayed copy of the request arrives. An error that is not a refusal (HTTP 500, a
//     lost reply, a reset connection) leaves the outcome open.
//   - DEMOTED: P's role record makes every later mount refuse the state (drfs reverse turns it
//     into a replica); the volume is read-only at once and the kernel mount is remounted
//     read-only.
//   - IN-DOUBT: the bound passed without an answer. P fails guest writes with EROFS instead of
//     blocking them: a blocked FUSE request past the bound would hang the guest's kernel, and a
//     hypervisor configured to stop a VM on a write error (QEMU werror=stop) pauses the VM
//     itself and resumes it cleanly after the resolution. The shipper asks R to abort the key
//     in the background (with backoff) until it gets an answer; drfs failover --resolve asks
//     once, at the operator's command. Abort is decisive either way: R either promoted under
//     the key (P demotes) or records that it never will (P resumes). Only when R's site is
//     known lost may the operator run drfs failover --resolve --force-resume, which clears the
//     record without R's answer.
//
// Wire: both requests are POST /v1/volumes/{v}/promote with wire.PromoteOptions
// {Planned, ExpectSeq, Key} or {Planned, Key, Abort}; see replica.Server for the answers.
