// Package link shares one replica site's network link between the volumes that replicate to
// it, by RPO deadline and tier, and tells the operator, before it happens, which volume will
// miss its RPO target when the link cannot carry everything.
//
// # Model
//
// A Link is one site's link. Each replicating volume Joins it as a Member with Params (tier,
// RPO target or interval) and a Demand function the link samples: raw bytes waiting, raw bytes
// ever appended (the write rate), and the time of the oldest change the replica has not
// acknowledged. Every change log a shipper sends is one Grant: the shipper Acquires it, reads
// at most Grant.MaxRaw bytes of its journal into one log, streams the log through Grant.Reader
// (which paces it to the link budget and marks the upload finished) and reports the result
// with Grant.Done. Logs are the unit of scheduling, and they are kept short (one Quantum of
// link time, 2 s by default and at most a tenth of the smallest RPO target), so a critical
// volume never waits behind a bulk volume's big log for longer than that.
//
// # Which log goes next
//
// Whenever the link is free — no upload under way and fewer than Slots logs waiting for their
// acknowledgement — the waiting member with the smallest key goes next:
//
//  1. urgent members first (SetUrgent: a planned failover draining its last log with guests
//     paused);
//  2. effective tier: the member's tier (1 is the most important), less one for every Aging
//     period (default 1 min) the request has waited, down to 0, ahead of every tier: a request
//     waits at most tier × Aging (plus the logs in flight), so no volume waits forever, and a
//     starving bulk volume takes one log at a time, not the link;
//  3. earliest deadline first: deadline = oldest unacknowledged change + RPO target (the
//     interval for an interval schedule, none for continuous);
//  4. first come, first served.
//
// A second log may start while the first waits for the replica's acknowledgement (two Slots),
// so the link does not idle while the replica applies. The link is work-conserving: it never
// idles while a member waits, whatever the deadlines.
//
// # Capacity
//
// The link's capacity is measured from the logs it carries: their bytes over the busy time
// each accounts for (since the previous log in flight ended, or since it began, so that logs
// in flight together split their time), one sample per 4 s of such time, averaged — counted
// only when logs that filled the link (cut at their size limit, or large ones sent while
// others waited) carried 80 % of the sample's bytes. A short log alone on the link measures
// its latency, not its bandwidth, and is left out. The capacity used for planning is the configured
// budget, or the measurement when it is lower (the real link may be narrower than the
// operator thinks), or the measurement alone when no budget is set. Until a link without a
// budget is measured, its logs carry ProvisionalLogBytes and no volume is predicted at risk.
// With a budget, every
// log's bytes are paced by one token bucket (golang.org/x/time/rate) shared by the members.
//
// # Plan and prediction
//
// Every Tick the link plans: in the dispatch order (tier, then deadline), each member is
// left avail = C - (the write rates of the members before it) of the capacity C in the long
// run, and first waits W = (their backlogs) / avail for what is queued ahead of it to clear.
// With its write rate r, backlog B (wire bytes, from its measured compression ratio), lag L,
// target T and a log of Q bytes, a member is predicted:
//
//	avail > r:  it keeps up; its lag peaks at L + W + min(B, Q)/avail, when its next log lands,
//	            or at W + B/avail, when the last of its backlog lands (a burst of writes);
//	avail <= r: its lag grows by a second a second for W, then by 1 - avail/r a second: it
//	            reaches T after W + (T - L - W) / (1 - avail/r) (at once if L + W >= T).
//
// A member whose lag is predicted to pass its target within four targets (an hour at least)
// is at risk, after two plans in a row say so: status shows when, and its lag then (when its
// next log lands, or one target from now when it falls behind); the drfs_link_rpo_at_risk
// gauge is 1, and one log line says so (repeated every 10 min while it lasts, and one more
// line once it was not at risk for 10 s).
package link
