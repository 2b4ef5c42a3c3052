package changelog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"drfs/journal"
)

// allOps returns one op of every type a change log can carry.
func allOps() []journal.Op {
	return []journal.Op{
		journal.OpMkdir{Path: "vm1", Mode: 0o755, Uid: 1, Gid: 2, Ino: 10},
		journal.OpCreate{Path: "vm1/disk.raw", Mode: 0o600, Uid: 107, Gid: 107, Ino: 11},
		journal.OpWrite{Path: "vm1/disk.raw", Ino: 11, Off: 1 << 40, Data: []byte("hello, world")},
		journal.OpWrite{Path: "vm1/disk.raw", Ino: 11, Off: 0, Data: nil},
		journal.OpTruncate{Path: "vm1/disk.raw", Ino: 11, Size: 10 << 30},
		journal.OpFallocate{Path: "vm1/disk.raw", Ino: 11, Mode: 3, Off: 4096, Len: 8192},
		journal.OpMknod{Path: "vm1/fifo", Mode: 0o10644, Rdev: 0x0801, Ino: 12},
		journal.OpSymlink{Path: "vm1/link", Target: "../../etc/anything", Uid: 3, Gid: 4, Ino: 13},
		journal.OpLink{OldPath: "vm1/disk.raw", NewPath: "vm1/disk.hard", Ino: 11},
		journal.OpUnlink{Path: "vm1/disk.hard", Ino: 11},
		journal.OpRename{OldPath: "vm1/disk.raw", NewPath: "vm1/disk.img", Flags: 1, Ino: 11},
		journal.OpSetattr{Path: ".", Valid: journal.SetMode | journal.SetMtime, Mode: 0o700, Atime: -5, Mtime: 1_700_000_000_123_456_789},
		journal.OpSetxattr{Path: "vm1/disk.img", Name: "user.drfs", Value: []byte{0, 1, 2}, Flags: 1, Ino: 11},
		journal.OpRemovexattr{Path: ".", Name: "user.x", Ino: 1},
		journal.OpRmdir{Path: "vm1/empty", Ino: 14},
	}
}

func testHeader() Header {
	return Header{
		Kind: KindJournal, VolumeID: "vol-1.a_b", Generation: 3,
		FromSeq: 100, ToSeq: 200,
		Created: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
	}
}

func testLog() *Log { return &Log{Header: testHeader(), Ops: allOps()} }

// MustMarshal encodes l or fails the test.
func MustMarshal(tb testing.TB, l *Log) []byte {
	tb.Helper()
	b, _, err := Marshal(l)
	if err != nil {
		tb.Fatalf("Marshal: %v", err)
	}
	return b
}

// rawLog describes a hand-built log: every field can lie.
type rawLog struct {
	h          Header
	version    uint16
	reserved   byte
	records    []byte // the raw body
	body       []byte // compressed body; nil: compress records
	ops        uint64 // declared op count
	rawLen     int64  // declared raw length; -1: len(records)
	compLen    int64  // declared compressed length; -1: len(body)
	badHdrCRC  bool
	badLogCRC  bool
	endMagic   string
	zstdNoSize bool // compress without a frame content size
}

func newRawLog(records []byte, ops uint64) *rawLog {
	return &rawLog{h: testHeader(), version: Version, records: records, ops: ops,
		rawLen: -1, compLen: -1, endMagic: endMagic}
}

// record frames one record the way Encode does.
func record(typ journal.RecordType, payload []byte) []byte {
	b := append([]byte{byte(typ)}, binary.AppendUvarint(nil, uint64(len(payload)))...)
	return append(b, payload...)
}

func zstdCompress(tb testing.TB, raw []byte, withSize bool) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		tb.Fatal(err)
	}
	if withSize {
		w.ResetContentSize(&buf, int64(len(raw)))
	}
	if _, err := w.Write(raw); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func (r *rawLog) bytes(tb testing.TB) []byte {
	tb.Helper()
	body := r.body
	if body == nil {
		body = zstdCompress(tb, r.records, !r.zstdNoSize)
	}
	rawLen, compLen := r.rawLen, r.compLen
	if rawLen < 0 {
		rawLen = int64(len(r.records))
	}
	if compLen < 0 {
		compLen = int64(len(body))
	}
	b := appendHeader(nil, &r.h, r.ops, uint64(rawLen), uint64(compLen))
	binary.LittleEndian.PutUint16(b[8:], r.version)
	b[11] = r.reserved
	crcOff := len(b) - 4
	crc := crc32.Checksum(b[:crcOff], castagnoli)
	if r.badHdrCRC {
		crc++
	}
	binary.LittleEndian.PutUint32(b[crcOff:], crc)
	b = append(b, body...)
	crc = crc32.Checksum(b, castagnoli)
	if r.badLogCRC {
		crc++
	}
	b = binary.LittleEndian.AppendUint32(b, crc)
	return append(b, r.endMagic...)
}

// headerLen is the size of the fixed header of a log of volume id.
func headerLen(id string) int { return prefixSize + len(id) + fixedFields + crcSize }

// dump renders a log as text for golden files and diffs.
func dump(l *Log) string {
	var s strings.Builder
	fmt.Fprintf(&s, "kind=%s volume=%s generation=%d from=%d to=%d created=%s\n",
		l.Kind, l.VolumeID, l.Generation, l.FromSeq, l.ToSeq, l.Created.Format(time.RFC3339Nano))
	for _, op := range l.Ops {
		fmt.Fprintf(&s, "%s %+v\n", op.Type(), op)
	}
	return s.String()
}
