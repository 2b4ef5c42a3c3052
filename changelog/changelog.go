package changelog

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"drfs/journal"
)

// Version is the format version written by Encode and the only one Decode
// accepts.
const Version = 1

// These constants are part of the format and must not be changed without
// bumping Version. See doc.go.
const (
	magic    = "DRFSCLG1" // first 8 bytes of every log
	endMagic = "DRFSEND1" // last 8 bytes of every log

	// prefixSize is magic, version (2), kind (1), reserved (1) and the
	// volume id length (1): what precedes the volume id.
	prefixSize = 8 + 2 + 1 + 1 + 1
	// fixedFields is generation, from, to, created, op count, raw length
	// and compressed length, 8 bytes each, after the volume id.
	fixedFields = 7 * 8
	crcSize     = 4
	trailerSize = crcSize + len(endMagic)

	// MaxVolumeIDLen is the longest volume id a header can carry.
	MaxVolumeIDLen = 64
	// MaxWindow is the largest zstd window a decoder accepts; the encoder
	// uses at most this.
	MaxWindow = 8 << 20
)

// MaxMergedWrite is the largest OpWrite Coalesce emits; longer extents are
// split. It is not part of the format (a decoder accepts any write size).
const MaxMergedWrite = 4 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Kind says what a log carries.
type Kind uint8

// Kinds. The values are part of the format.
const (
	// KindJournal logs carry the records of journal seqs FromSeq..ToSeq.
	KindJournal Kind = 1
	// KindResync logs carry block-level repairs (of extents the primary
	// lost track of), not a seq range of the journal.
	KindResync Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindJournal:
		return "journal"
	case KindResync:
		return "resync"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Header identifies a log: which volume and generation it belongs to and
// which journal seqs it covers.
type Header struct {
	Kind       Kind
	VolumeID   string // 1..64 bytes of [0-9a-zA-Z._-]
	Generation uint64
	FromSeq    uint64    // first journal seq covered (KindJournal, >= 1); 0 for KindResync
	ToSeq      uint64    // last journal seq covered (>= FromSeq)
	Created    time.Time // stored as Unix nanoseconds, decoded in UTC
}

// Log is a decoded change log.
type Log struct {
	Header
	// Ops in apply order; never journal.OpHot. After Decode, byte slices
	// (OpWrite.Data, OpSetxattr.Value) alias one buffer owned by the Log.
	Ops []journal.Op
}

// Limits bound what Decode accepts. Zero (or negative) fields take the
// defaults.
type Limits struct {
	MaxBodyBytes int64 // max uncompressed body; default DefaultMaxBodyBytes
	MaxOps       int   // max op count; default DefaultMaxOps
}

// Default limits.
const (
	DefaultMaxBodyBytes = 1 << 30
	DefaultMaxOps       = 16 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.MaxOps <= 0 {
		l.MaxOps = DefaultMaxOps
	}
	return l
}

// Stats describes an encoded log.
type Stats struct {
	Ops          int
	RawBytes     int64 // uncompressed body (the records)
	EncodedBytes int64 // whole log: header, compressed body and trailer
}

// Sentinel errors. Decode returns them wrapped with context; test with
// errors.Is.
var (
	// ErrChecksum reports corruption: a header or log CRC32C mismatch or a
	// damaged end magic.
	ErrChecksum = errors.New("changelog: checksum mismatch")
	// ErrTruncated reports input that ends before the log does.
	ErrTruncated = errors.New("changelog: truncated log")
	// ErrVersion reports a log of a format version this package can't read.
	ErrVersion = errors.New("changelog: unsupported version")
	// ErrTooLarge reports a log over the decoder's Limits, or a body that
	// decompresses to more than its header declares.
	ErrTooLarge = errors.New("changelog: log too large")
	// ErrBadLog reports a log that is intact but not valid: bad magic,
	// header field, zstd frame or record (a bad path, an OpHot, ...).
	ErrBadLog = errors.New("changelog: bad log")
)

// ValidVolumeID reports whether id can name a volume in a log header and
// a file name.
func ValidVolumeID(id string) error {
	if id == "" {
		return errors.New("empty volume id")
	}
	if len(id) > MaxVolumeIDLen {
		return fmt.Errorf("volume id longer than %d bytes", MaxVolumeIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("volume id %q: bad character %q", id, c)
		}
	}
	return nil
}

// minCreated and maxCreated bound the times Unix nanoseconds can hold.
var (
	minCreated = time.Unix(0, math.MinInt64)
	maxCreated = time.Unix(0, math.MaxInt64)
)

// validate checks the header fields both Encode and Decode require.
func (h *Header) validate() error {
	if err := ValidVolumeID(h.VolumeID); err != nil {
		return err
	}
	switch h.Kind {
	case KindJournal:
		if h.FromSeq == 0 {
			return errors.New("journal log with from seq 0")
		}
	case KindResync:
		if h.FromSeq != 0 {
			return fmt.Errorf("resync log with from seq %d", h.FromSeq)
		}
	default:
		return fmt.Errorf("unknown kind %d", uint8(h.Kind))
	}
	if h.FromSeq > h.ToSeq {
		return fmt.Errorf("from seq %d > to seq %d", h.FromSeq, h.ToSeq)
	}
	return nil
}

// appendHeader appends the fixed header, including its CRC.
func appendHeader(b []byte, h *Header, ops, raw, compressed uint64) []byte {
	start := len(b)
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint16(b, Version)
	b = append(b, byte(h.Kind), 0, byte(len(h.VolumeID)))
	b = append(b, h.VolumeID...)
	b = binary.LittleEndian.AppendUint64(b, h.Generation)
	b = binary.LittleEndian.AppendUint64(b, h.FromSeq)
	b = binary.LittleEndian.AppendUint64(b, h.ToSeq)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.Created.UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, ops)
	b = binary.LittleEndian.AppendUint64(b, raw)
	b = binary.LittleEndian.AppendUint64(b, compressed)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// FileName is the canonical name of a log in a directory. Journal logs are
// named by volume, generation and seq range,
//
//	<volume>-g<generation %016x>-<from %016x>-<to %016x>.dcl
//
// so the same log written twice has the same name and names sort by seq
// within a generation. Resync logs cover no seq range; their name carries
// the creation time and a random suffix so two never collide:
//
//	<volume>-g<generation %016x>-resync-<created ns %016x>-<random %08x>.dcl
func FileName(h Header) string {
	if h.Kind == KindResync {
		var r [4]byte
		_, _ = rand.Read(r[:]) // never fails (crypto/rand panics instead)
		return fmt.Sprintf("%s-g%016x-resync-%016x-%08x.dcl", h.VolumeID, h.Generation,
			uint64(h.Created.UnixNano()), binary.BigEndian.Uint32(r[:]))
	}
	return fmt.Sprintf("%s-g%016x-%016x-%016x.dcl", h.VolumeID, h.Generation, h.FromSeq, h.ToSeq)
}
