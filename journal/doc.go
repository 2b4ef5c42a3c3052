/*
Package journal is the write-ahead log of a drfs volume: an append-only,
segmented, checksummed log of every mutation, each record numbered by a
monotonically increasing sequence number (Seq, the first record is 1).

The FUSE layer calls Append for every guest write before it writes the
backing file, and Sync when the guest fsyncs. The shipper reads records with
Read and, once a change log is acknowledged and the backing files are
checkpointed, drops old segments with Release.

# Files

A journal is a directory:

	0000000000000001.seg       segments, named by the seq of their first
	0000000000001a2b.seg       record (%016x), ordered by name
	prealloc-7.tmp             the zero-filled spare segment (deleted by Open)
	broken/<seg>.<off>.broken  bytes cut from a torn or corrupt tail

Segments are preallocated (default 64 MiB) by a background goroutine that
writes real zeros and fsyncs them, so the blocks of the next segment exist
before any record goes in: a later fdatasync never logs block allocation, and a
full disk shows up as ENOSPC from Append, never as SIGBUS on the mapping. A
rollover writes the header into the spare, renames it to its final name and
makes it the active segment; the flush loop fsyncs the directory before any
record in it is reported durable. A record larger than a segment gets a
segment sized to fit. The unused tail of a segment stays zero.

Options.FirstSeq starts a journal created in an empty directory at a given
seq: a promoted replica continues its volume's numbering that way.

# Segment header

	+----------------+-------------+-------------+----------------+-----------+-----------+
	| magic (8B)     | version (4B)| hdr size(4B)| first seq (8B) | 0 (4B)    | CRC (4B)  |
	| "DRFSJRN1"     | 1           | 32          |                |           |           |
	+----------------+-------------+-------------+----------------+-----------+-----------+

All integers are little-endian. CRC is CRC-32C (Castagnoli) of the first 28
bytes. The first seq must match the file name.

# Record frame

Records follow the header back to back, each frame starting at an offset
that is a multiple of 8:

	+----------+------------+----------+-----------+-------------------+----------------+
	| CRC (4B) | length (4B)| seq (8B) | type (1B) | payload (length B)| zero pad to 8B |
	+----------+------------+----------+-----------+-------------------+----------------+

CRC is CRC-32C over length, seq, type and payload. The seq of each frame must
be the previous one plus one (the first equals the header's first seq), which
rejects stale bytes that happen to carry a valid CRC. Type 0 is invalid. A
frame whose first 16 bytes are zero marks the end of the written data: seq 0
is never valid, so a real record never looks like that.

An appender writes the whole frame (header, then payload parts) with one
pwritev at its reserved offset; the padding is already zero in a fresh
segment. A frame cut short by the death of the process fails its CRC.

These constants are part of the format and must not be changed without
bumping the version: segMagic, formatVersion, segHeaderSize (32), frameHeader
(17), frameAlign (8), the CRC-32C polynomial, the record type values and the
op encoding below.

# Reading a segment: three outcomes

Scanning a segment stops at the first frame that is not valid and reports
one of:

  - io.EOF: clean end, only zeros from there to the end of the file.
  - io.ErrUnexpectedEOF: torn tail, a frame cut by the end of the file, or a
    bad frame followed only by zeros up to the end of the segment: the last
    thing written was interrupted.
  - ErrCRCMismatch: corruption, a bad frame (checksum, seq, type, non-zero
    padding) followed by more non-zero data, or non-zero data after an end
    marker.

# Durability

Append takes a mutex only to assign the seq and reserve the byte range (and
to roll over), then writes the frame with pwritev outside the lock, so
concurrent appenders write in parallel. (Segments are mapped read-only in
effect: readers use the MAP_SHARED mapping, which the page cache keeps
coherent with the writes. Writing through the mapping instead made every
fdatasync about 1.5x slower: writeback has to write-protect the dirtied pages
again.) If a write fails, the journal is poisoned: no later record could be
published past the hole, so every Append and Sync returns the cause.
A published watermark advances over contiguous completed records. Append
returns once the watermark covers its own seq: its bytes and those of every
earlier record are in the page cache, so they survive kill -9 of the process.
(Waiting for earlier records costs at most the tail of their write; it
guarantees that an acknowledged record never sits behind a hole, which
recovery would have to cut.)

Sync(seq) waits for the watermark to cover seq and asks the flush loop, the
only goroutine that syncs, to fdatasync the segments holding records up to
the watermark (and fsync the directory for new segments). Every Sync covered
by that one fdatasync returns together: group commit. A failed fdatasync is
sticky; the journal returns that error from then on.

# Recovery

Open scans every segment in order, checking headers, CRCs and that seqs are
contiguous across segments (a gap is ErrSeqGap). Then:

  - The last segment may end in a torn or corrupt tail: the bytes from the bad
    frame to the last non-zero byte are saved to
    broken/<segment>.<offset>.broken (fsynced), zeroed in the segment and the
    segment fsynced. RecoveryInfo reports how much was cut and where it went.
  - The second-to-last segment may end in a torn tail (io.ErrUnexpectedEOF)
    only: that is an append in flight across a rollover, so nothing in the last
    segment was acknowledged. Its tail is cut as above and the last segment is
    moved to broken/<segment>.0.broken.
  - Any other bad frame fails Open with an error wrapping ErrCRCMismatch or
    io.ErrUnexpectedEOF that names the segment and offset: acknowledged
    records are never dropped silently.

Because Append waits for the watermark, after kill -9 every acknowledged
record precedes the first bad frame; records after it were never
acknowledged, so cutting there loses nothing that was promised. (A flipped
bit in the middle of the last segment is also cut there, and reported.)

# Op encoding

The payload of each record type is one Op (op.go). Fields are encoded one
after the other in the order of the table below, with no tags or padding, in
one of four encodings:

	uvarint  unsigned integer, minimal unsigned LEB128 (encoding/binary
	         AppendUvarint); at most 10 bytes, 5 for a uint32 field, whose
	         value must fit 32 bits
	varint   signed integer, minimal zig-zag LEB128 (binary.AppendVarint):
	         offsets, sizes, lengths and times in Unix ns
	str      a uvarint byte count, then that many bytes (no terminator)
	rest     every byte to the end of the payload, no length

A "path" is a str holding a volume-relative path that passes ValidPath:
non-empty, at most 4096 bytes, relative, filepath.Clean'ed, no NUL, not ".."
and not under "..". "path|." also accepts "." for the volume root.

	type  name         fields, in order
	----  -----------  ------------------------------------------------------
	 1    write        path Path, uvarint Ino, varint Off (>= 0), rest Data
	 2    truncate     path Path, uvarint Ino, varint Size (>= 0)
	 3    fallocate    path Path, uvarint Ino, uvarint Mode (fallocate(2)
	                   flags), varint Off (>= 0), varint Len (>= 0)
	 4    create       path Path, uvarint Mode, uvarint Uid, uvarint Gid,
	                   uvarint Ino
	 5    mkdir        path Path, uvarint Mode, uvarint Uid, uvarint Gid,
	                   uvarint Ino
	 6    mknod        path Path, uvarint Mode, uvarint Uid, uvarint Gid,
	                   uvarint Rdev, uvarint Ino
	 7    symlink      path Path, str Target (1..4096 bytes, no NUL, any
	                   other content), uvarint Uid, uvarint Gid, uvarint Ino
	 8    link         path OldPath, path NewPath, uvarint Ino
	 9    unlink       path Path, uvarint Ino
	10    rmdir        path Path, uvarint Ino
	11    rename       path OldPath, path NewPath, uvarint Flags
	                   (renameat2(2) flags), uvarint Ino
	12    setattr      path|. Path, uvarint Valid, uvarint Mode, uvarint Uid,
	                   uvarint Gid, varint Atime, varint Mtime, uvarint Ino
	13    setxattr     path|. Path, str Name (1..255 bytes, no NUL),
	                   str Value (0..65536 bytes), uvarint Flags
	                   (setxattr(2) flags), uvarint Ino
	14    removexattr  path|. Path, str Name (1..255 bytes, no NUL),
	                   uvarint Ino
	15    hot          uvarint Ino, uvarint Region

Mode is the full st_mode (file type and permission bits) for create, mkdir
and mknod; for setattr it is the mode the guest asked for, of which only the
permission bits (07777) are applied. Uid, Gid, Mode and Flags
fields are uint32 values. A write of n bytes at Off is, byte for byte:

	| str path | uvarint ino | varint off | n bytes of data |

so AppendWriteHeader(path, ino, off) followed by the data is the whole
payload and Append can take the data as a separate part without another
copy.

Setattr applies only the attributes whose bit is set in Valid; the other
fields are written (as 0 by the mount) and ignored. Any other bit makes the
record invalid:

	SetMode   0x01   chmod to Mode
	SetUid    0x02   chown to Uid
	SetGid    0x04   chown to Gid
	SetAtime  0x08   set atime to Atime
	SetMtime  0x10   set mtime to Mtime

The type values and setattr bits are pinned by TestOp_FormatConstants, and
journal/testdata/ops/<type>.bin holds the payload of one op of every type
(TestOp_Golden; regenerate with go test ./journal -run TestOp_Golden -update
only when the format is deliberately changed, with a new version).

Every op carries Ino, the inode number of its object in the source
filesystem: local replay after a crash applies data records by inode, because a
file may have been renamed after the record was written.

# Replay (the primary's own recovery)

After an unclean stop, the records after the checkpoint seq are replayed into
the source. Two rules make replay safe against whatever the guest did to the
namespace, and idempotent (replaying the same records twice, or over a source
that already holds some of them, gives the same tree):

 1. A namespace or attribute record (create, mkdir, mknod, symlink, link,
    unlink, rmdir, rename, setattr, setxattr, removexattr: RecordType.IsNamespace
    and IsAttr; Op.Dirs and Op.Object name what it touches) is appended only
    after its change is durable in the source (the parent directories of the
    names it adds or removes, and the object whose attributes it changes, are
    fsynced), and it is durable in the journal before the guest's call returns.
    So the source always holds every namespace change the journal holds, and
    replay never re-applies one: replay applies data records only.
 2. A data record (RecordType.IsData: write, truncate, fallocate with mode
    0, KEEP_SIZE, PUNCH_HOLE or ZERO_RANGE) sets bytes or a size, so applying it again changes
    nothing. Replay applies it to the regular file that now has the record's
    inode number, found by a scan of the source that follows no symlink and
    opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS); a record for an
    inode that no file has any more is skipped (its removal was durable before
    the removal's record was appended). A record earlier than the latest create
    record of the same inode number belongs to an earlier file and is skipped.
    COLLAPSE_RANGE and INSERT_RANGE shift data and are not idempotent: the mount
    refuses them (the kernel's FUSE client does too) and they never appear in a
    journal; replay refuses one if it does.

A data record that fails on an existing file (a full or failing source disk)
stops the mount with the list of such records; the operator either fixes the
cause and mounts again, or mounts with --skip-unreplayable, which marks those
files for resync.

The checkpoint (volume package) fsyncs every file written since the previous
checkpoint, never syncfs, and records a checkpoint seq only once the journal is
durable up to it: the journal and the source may sit on different disks that
each lose their unsynced tail at a power loss.

DecodeOp is strict: every length is bounds-checked, integers must be
minimally encoded, trailing bytes are rejected and paths must be relative,
clean, NUL-free, within the volume and at most 4096 bytes (ValidPath); "."
(the root) is accepted only by setattr and xattr ops. After DecodeOp,
OpWrite.Data and OpSetxattr.Value alias the payload.

# Metrics

Open builds the collectors; RegisterMetrics adds them to a registry:
drfs_journal_fsync_duration_seconds, drfs_journal_records_appended_total,
drfs_journal_bytes_appended_total, drfs_journal_fsyncs_total,
drfs_journal_size_bytes, drfs_journal_last_seq and drfs_journal_durable_seq.
*/
package journal
