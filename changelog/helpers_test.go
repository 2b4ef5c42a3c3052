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
	"drfs/journal/journaltest"
)

// allOps returns one op of every type a change log can carry.
func allOps() []journal.Op { return journaltest.Ops() }

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
