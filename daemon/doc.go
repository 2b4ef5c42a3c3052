// Package daemon runs the volumes of one host: `drfs daemon --config /etc/drfs/drfs.yaml`
// mounts every volume the file declares, replicates each to its site, and keeps them so;
// `drfs mount` is the same code for one volume given by flags (Options.Single).
//
// # One volume
//
// Each volume has a runner. Starting a volume opens it (replaying its journal after a crash),
// connects its shipper to the site's shared link (package link) when it replicates, serves its
// control socket in its state directory (drfs sync, failover, verify and seed export reach
// the volume there, as with drfs mount) and mounts it. When a volume fails to start (a missing
// source, a full disk, a journal record that cannot be replayed, a state directory another
// drfs holds) or stops unexpectedly (its mountpoint unmounted behind drfs's back, a panic in
// its shipper), its runner records the error, reports it in status and in the
// drfs_daemon_volume_up and drfs_daemon_volume_failures_total metrics, and starts it again
// after a backoff: 1 s, doubling to 5 min, back to 1 s after it ran for 5 min. No other volume
// notices: one bad volume never takes the others down. A panic in a FUSE request still ends
// the process, as in any go-fuse server; systemd restarts it (deploy/systemd/drfs.service).
//
// Stopping a volume syncs its journal, unmounts it (lazily if a guest still holds files open,
// serving them until they are closed), stops its shipper, checkpoints and closes it. On
// SIGINT/SIGTERM every volume is stopped at once, in parallel.
//
// # Reload
//
// SIGHUP, or `drfs reload` (POST /reload on the host socket), reads the file again. A file
// with any problem is refused whole and the running configuration stays (drfs reload prints
// every problem as FILE:LINE: FIELD: MESSAGE and exits non-zero; drfs_daemon_reloads_total
// counts refusals). Otherwise config.Diff says, volume by volume, what changed, and Apply does
// the least each change needs, in this order:
//
//  1. removed volumes are unmounted (in parallel), so that a volume renamed, or moved to
//     another state directory, can come up again in step 4;
//  2. a site's changed bandwidth goes to its link; nothing else notices;
//  3. changed volumes: a schedule change (interval, rpo, tier, journal-max) applies to the
//     running shipper in place; a replica change (site, its URL or certificates) restarts the
//     shipper only, the mount stays; any other change (paths, journal, checkpoints) unmounts
//     the volume and mounts it again;
//  4. added volumes are started.
//
// Untouched volumes are not touched. Settings of the whole process (socket, log, metrics)
// keep their running value until the daemon restarts, and the reload says so.
//
// # The host socket
//
// The daemon answers `drfs status` and `drfs reload` on a unix socket (the file's socket key,
// /run/drfs/drfs.sock by default; protocol in package control, host.go): every volume of the
// file in its order, with its state (starting, running, restarting, stopping), its last error
// and when it is tried again, its own status while it runs (replication, lag, the link's share,
// deadline and at-risk prediction), and every link. A second daemon refuses to start on a
// socket the first one answers on.
//
// # systemd
//
// Under Type=notify (NOTIFY_SOCKET set) the daemon sends READY=1 once every volume was tried
// once (mounted or failed: a failing volume does not hold up the others' guests), STATUS= with
// how many volumes are mounted whenever that changes, RELOADING=1 and READY=1 around a reload,
// STOPPING=1 on SIGTERM, and WATCHDOG=1 every half WatchdogSec while its main loop and its
// locks are free.
//
// # Metrics
//
// One registry: each volume's series carry volume=NAME (registered when it starts,
// unregistered when it stops), each link's site=NAME, plus the Go and process collectors and
// the daemon's own drfs_daemon_* series, served on the file's metrics.listen.
package daemon
