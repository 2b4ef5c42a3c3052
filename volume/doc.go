/*
Package volume is the FUSE-free core of a drfs primary: it owns the source directory, the
journal, the metadata store and the activity log, and turns each mutation into a journal
record before it reaches a source file. The fs package adapts go-fuse calls onto it.

# State directory

A primary keeps everything it knows about a volume in its state directory (Config.State),
which must lie outside the source and the mountpoint (Open refuses other layouts):

	LOCK          flock(2)ed exclusively (LOCK_EX|LOCK_NB) by the process that has the
	              volume open, and briefly by ReadStatus; holds that process's PID and a
	              newline, for people. Never deleted.
	journal/      the write-ahead log (package journal, journal/doc.go): segments
	              %016x.seg named by their first seq, prealloc-*.tmp, broken/.
	meta/         the metadata store: a badger v4 database opened with synchronous
	              writes, so every completed write is durable. Keys below. Empty .mem
	              and .vlog files (a power loss right after badger created one) are
	              removed before it is opened: badger refuses them, and they hold nothing.
	drfs.sock     the control socket of a mounted volume: HTTP over a Unix socket
	              (GET /status, POST /failover, /failover-resolve, /verify,
	              /seed-export, /sync), served by the mount command; a leftover of an
	              unclean stop is removed at the next mount.
	audit.log     the audit log (internal/audit): one JSON object per line, appended and
	              fsynced for every failover action (promote, demote, reverse, failover,
	              test-failover, ...). Never rewritten.

A state directory is bound to one source: the first Open records the volume's identity and
source path, and a later Open with another source (or another --name) is refused. The
replica side has its own layout (package replica).

# Metadata keys

Keys are ASCII strings; the constants are in meta.go. Integers are 8-byte big-endian
unsigned; an absent integer reads as 0 unless said otherwise. JSON values use the field
names of the Go types named (FileStat, Extent, GenRecord, RoleRecord, HandOver); times are
RFC 3339 in UTC.

	volume/id             string   16 lower-case hex digits, random at creation; the same on
	                               the replica and across failovers: the volume's identity
	volume/name           string   the volume's name (default: the source's base name)
	volume/source         string   the absolute, symlink-free source path
	volume/checkpoint     integer  the checkpoint seq: every record <= it is in the source
	                               files and durable there; replay after an unclean stop
	                               starts after it. A new journal starts at checkpoint+1.
	volume/running        string   the time of the mount, as RFC 3339; set at Open after
	                               recovery, deleted by a clean Close after its final
	                               checkpoint. Present at Open means the last stop was
	                               unclean: the journal is replayed after the checkpoint.
	volume/generation     integer  the volume's generation, 1 when absent; a promotion
	                               creates the new primary's state with the old one + 1
	volume/history        JSON     []GenRecord, oldest first; absent means
	                               [{generation 1, start_seq 1, action "create"}]
	volume/role           JSON     RoleRecord, role "demoted": this state was superseded and
	                               Open refuses it as a primary. Absent for a primary.
	volume/handover       JSON     HandOver: a planned failover asked the replica to
	                               promote and its outcome is not known yet; while present
	                               the volume refuses writes, across restarts too
	volume/handover-seen  string   the ID of the last hand-over request of the replica the
	                               shipper acted on (written by the shipper)
	ship/next             integer  the last seq the replica acknowledged, or that a pending
	                               resync covers: shipping resumes at ship/next+1, and the
	                               journal is kept from there (written by the shipper; seed
	                               import and promotion set it too)
	ship/replica          string   the replica the shipper ships to: host:port, or the
	                               directory of an export (written by the shipper)
	ship/sync_seq         integer  seq+1 while a full resync is pending: once every resync/
	                               extent is resent, the replica is consistent at seq;
	                               0 or absent when none (written by the shipper)
	ship/sync_busy        integer  1 from the start of a resync pass until the replica
	                               acknowledged its completion; 0 or absent otherwise
	                               (written by the shipper)
	file/<path>           JSON     FileStat of every object of the source at the last
	                               checkpoint: <path> is relative to the source, "." for its
	                               root; the whole set is replaced at every checkpoint. At
	                               Open, an object whose inode, mode, or (for non-
	                               directories) size, mtime or ctime differ, that is new or
	                               that vanished, and that the journal does not explain, was
	                               changed behind drfs's back and is marked for resync.
	resync/<path>\x00<off> JSON    Extent waiting to be compared with the replica and resent
	                               where it differs; <off> is the extent's offset as 16
	                               lower-case hex digits (of its two's-complement uint64), so
	                               keys sort by path, then offset. Len -1 means the whole
	                               file. A second extent at the same path and offset keeps the
	                               longer one. Deleted once resynced.

No other key is written on a primary. Keys written by the shipper are used only through the
constants exported here (KeyShipNext, KeyReplica, KeyShipSyncSeq, KeyShipSyncBusy,
KeyHandOverSeen).
*/
package volume
