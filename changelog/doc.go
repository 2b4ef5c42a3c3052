/*
Package changelog is the unit of replication: the records of a volume's
journal between two seqs, coalesced (Coalesce) and compressed into one
self-checking blob that is shipped to a replica over HTTPS, or written to
a directory (WriteFile) for offline transport, then applied atomically and
acknowledged by the replica.

A replica decodes logs it gets from the network, so Decode is an attack
surface. It verifies the whole log (checksums, limits, every record)
before returning anything, and refuses bad input with an error wrapping
one sentinel and no Log: nothing is applied unless all of it verified.

# Kinds

A KindJournal log covers the journal seqs FromSeq..ToSeq (FromSeq >= 1)
of one generation of a volume: ops in apply order. A KindResync log
carries block-level repairs of extents the primary only knows as dirty
(after the journal overflowed into the dirty-extent map); it covers no
seq range (FromSeq 0, ToSeq the journal position it is consistent with).

# Log layout

All integers are little-endian.

	+------------------------------------------------------------------+
	| header                                                           |
	|   magic "DRFSCLG1" (8B) | version (2B) | kind (1B) | reserved (1B)|
	|   volume id length (1B) | volume id (0..64B)                     |
	|   generation (8B) | from seq (8B) | to seq (8B)                  |
	|   created, Unix ns, signed (8B) | op count (8B)                  |
	|   body raw length (8B) | body compressed length (8B)             |
	|   header CRC (4B)                                                |
	+------------------------------------------------------------------+
	| body: one zstd frame, compressed length bytes                    |
	+------------------------------------------------------------------+
	| trailer: log CRC (4B) | end magic "DRFSEND1" (8B)                |
	+------------------------------------------------------------------+

The header CRC is CRC-32C (Castagnoli) of the header bytes before it; the
log CRC is CRC-32C of everything before it (header and compressed body).
The reserved byte is 0. The volume id is 1 to 64 bytes of [0-9a-zA-Z._-].

The body decompresses to exactly raw length bytes of records, op count of
them, back to back:

	+-----------+---------------------------+-------------------------------+
	| type (1B) | payload length (uvarint)  | payload (journal.EncodeOp)    |
	+-----------+---------------------------+-------------------------------+

The type is a journal.RecordType and the payload its journal op encoding
(see package journal), so a log carries exactly what the journal does,
less the OpHot activity records, which are local to the primary. The
length is a minimal uvarint.

The zstd frame is written by github.com/klauspost/compress/zstd with the
frame content size and the content checksum (xxhash64) set, and a window of
at most 4 MiB; decoders accept windows up to MaxWindow (8 MiB).

The level is SpeedDefault. BenchmarkEncodeLevel compared it with
SpeedFastest on the target workload (5,000 4 KiB writes at random offsets
of a 2 GiB image, coalesced, about 20 MiB; 2-core EPYC): on random data
neither compresses and SpeedFastest takes 6 ms against 15 ms; on zeros
SpeedDefault is as fast and 17% smaller (ratio 704 vs 603); on text-like
data both run at about 450 MB/s and SpeedDefault is 9% smaller (5.29 vs
4.84). A cycle's body crosses a WAN link (20 MiB is 170 ms at 1 Gbit/s),
so the bytes saved outweigh the 9 ms of CPU lost on incompressible data.

These are part of the format and must not change without bumping Version:
the two magics, the header layout and field order, the CRC-32C polynomial,
the Kind values, the record framing, the journal record type values and op
encoding, and MaxWindow. MaxMergedWrite and the zstd level are not: a
decoder accepts any write size and any level.

# Truncation and corruption

Every read has a bounded, declared length, so a log cut anywhere is
ErrTruncated: the header is fixed-size once its id length is read, the
body length is in the header, and the trailer's end magic shows the log
was written to its end. A damaged byte anywhere is ErrChecksum: the header
CRC covers the header (so lengths are trusted only after it verifies), the
log CRC covers the compressed body, and the end magic is compared last.
A bad magic or field in an intact header, a zstd frame that doesn't
decode, a record that journal.DecodeOp refuses, an OpHot, a record count
that differs from the header and bytes after the end magic are ErrBadLog.
A version other than Version is ErrVersion, checked before anything else
so a newer layout is reported as such.

# Limits and decompression bombs

Limits.MaxBodyBytes (default 1 GiB) and Limits.MaxOps (default 16M) bound
the declared raw length and op count; the compressed length must be within
zstd's compression bound of the raw length. All three are checked against
the verified header before anything is allocated (ErrTooLarge), and the
buffers then grow only as bytes actually arrive, so a lying header costs
the bytes sent, not the bytes claimed. The decompressor is bounded by
zstd.WithDecoderMaxWindow(MaxWindow) and WithDecoderMaxMemory, and the body
is inflated into a buffer of the declared raw length: the first byte past
it ends decoding with ErrTooLarge, however far the frame would expand.

# Paths

journal.DecodeOp refuses every path that is absolute, not in clean form,
contains NUL, or starts with "..": no op in a decoded log names anything
outside the volume root lexically. It cannot know whether a path passes
through a symlink that points outside the root (a symlink's target is any
string): that can only be caught when the replica applies the log, which
is why the replica resolves every path with openat2(2) RESOLVE_BENEATH
(and RESOLVE_NO_MAGICLINKS) relative to the volume root.

# Coalescing

Coalesce merges each run of writes not separated by another op: later data
wins where writes overlap, adjacent ranges join (split at MaxMergedWrite),
and every other op is a barrier kept in order. 5,000 random 4 KiB writes to
a 2 GiB image barely overlap, so coalescing mostly saves record overhead;
a guest rewriting the same blocks between cycles is where it pays.

# File names

FileName names a journal log by volume, generation and seq range (%016x),
so a log written twice for the same range replaces itself and names sort
by seq within a generation; resync logs get the creation time and a
random suffix. WriteFile installs a log with a temporary file, fsync,
rename and directory fsync.
*/
package changelog
