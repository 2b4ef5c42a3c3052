package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// These constants are part of the on-disk format and must not be changed
// without bumping formatVersion. See doc.go.
const (
	segMagic      = "DRFSJRN1"
	formatVersion = 1
	segHeaderSize = 32
	frameHeader   = 17 // crc(4) + length(4) + seq(8) + type(1)
	frameAlign    = 8
	minFrame      = 24 // frameHeader rounded up to frameAlign
	// MaxPayload is the largest record payload Append accepts.
	MaxPayload = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sentinel errors. They are returned wrapped with context; test with errors.Is.
var (
	// ErrCRCMismatch reports corruption: a frame that fails its checksum or
	// sequence check and is followed by more written data.
	ErrCRCMismatch = errors.New("journal: crc mismatch")
	// ErrBadHeader reports a segment whose header is not a valid drfs header.
	ErrBadHeader = errors.New("journal: bad segment header")
	// ErrSeqGap reports a sequence number missing between two segments.
	ErrSeqGap = errors.New("journal: sequence gap")
	// ErrClosed is returned by operations on a closed journal.
	ErrClosed = errors.New("journal: closed")
	// ErrTooLarge is returned by Append for a payload over MaxPayload.
	ErrTooLarge = errors.New("journal: record too large")
	// ErrBadRecordType is returned by Append for type 0 and by DecodeOp for
	// unknown types.
	ErrBadRecordType = errors.New("journal: bad record type")
)

// frameSize is the on-disk size of a record with an n-byte payload.
func frameSize(n int) int64 {
	return (int64(frameHeader) + int64(n) + frameAlign - 1) &^ (frameAlign - 1)
}

// encodeSegHeader fills b[:segHeaderSize] with the header of a segment whose
// first record is first.
func encodeSegHeader(b []byte, first Seq) {
	copy(b[0:8], segMagic)
	binary.LittleEndian.PutUint32(b[8:12], formatVersion)
	binary.LittleEndian.PutUint32(b[12:16], segHeaderSize)
	binary.LittleEndian.PutUint64(b[16:24], uint64(first))
	binary.LittleEndian.PutUint32(b[24:28], 0)
	binary.LittleEndian.PutUint32(b[28:32], crc32.Checksum(b[0:28], castagnoli))
}

// decodeSegHeader validates a segment header and returns its first seq.
func decodeSegHeader(b []byte) (Seq, error) {
	if len(b) < segHeaderSize {
		return 0, fmt.Errorf("%w: short header (%d bytes)", ErrBadHeader, len(b))
	}
	if string(b[0:8]) != segMagic {
		return 0, fmt.Errorf("%w: bad magic %q", ErrBadHeader, b[0:8])
	}
	if crc32.Checksum(b[0:28], castagnoli) != binary.LittleEndian.Uint32(b[28:32]) {
		return 0, fmt.Errorf("%w: header crc", ErrBadHeader)
	}
	if v := binary.LittleEndian.Uint32(b[8:12]); v != formatVersion {
		return 0, fmt.Errorf("%w: unsupported version %d", ErrBadHeader, v)
	}
	if hs := binary.LittleEndian.Uint32(b[12:16]); hs != segHeaderSize {
		return 0, fmt.Errorf("%w: header size %d", ErrBadHeader, hs)
	}
	first := Seq(binary.LittleEndian.Uint64(b[16:24]))
	if first == 0 {
		return 0, fmt.Errorf("%w: first seq 0", ErrBadHeader)
	}
	return first, nil
}

// putFrameHeader writes length, seq and type of a frame. The CRC is written
// last by putFrameCRC, so a frame interrupted by a crash never carries a valid
// CRC, and any frame with a non-zero byte has its length written (see doc.go).
func putFrameHeader(b []byte, n int, seq Seq, typ RecordType) {
	binary.LittleEndian.PutUint32(b[4:8], uint32(n))
	binary.LittleEndian.PutUint64(b[8:16], uint64(seq))
	b[16] = byte(typ)
}

// isZero reports whether b holds only zero bytes.
func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// lastNonZero returns the index of the last non-zero byte of b, or -1.
func lastNonZero(b []byte) int {
	i := len(b)
	for i >= 8 && binary.LittleEndian.Uint64(b[i-8:i]) == 0 {
		i -= 8
	}
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return i - 1
}

// scanResult is the outcome of scanning one segment.
type scanResult struct {
	first Seq   // from the header
	last  Seq   // last valid record (first-1 if none)
	end   int64 // offset just past the last valid frame
	// err is io.EOF (clean end), io.ErrUnexpectedEOF (torn tail: the bad
	// frame is the last thing written) or wraps ErrCRCMismatch (a bad frame
	// followed by more data). It is never nil.
	err error
	// garbageEnd is one past the last non-zero byte when err is not io.EOF:
	// [end, garbageEnd) is what recovery cuts.
	garbageEnd int64
}

// scanSegment reads the records of a whole segment image, calling fn (if
// non-nil) for each valid record in order. fn's Record.Payload aliases data.
// A non-nil error from fn stops the scan and is returned as the second result.
func scanSegment(data []byte, fn func(Record) error) (scanResult, error) {
	first, err := decodeSegHeader(data)
	if err != nil {
		return scanResult{}, err
	}
	r := scanResult{first: first, last: first - 1, end: segHeaderSize}
	for {
		rec, n, ferr := nextFrame(data, r.end, r.last+1)
		if ferr == nil {
			if fn != nil {
				if err := fn(rec); err != nil {
					return r, err
				}
			}
			r.last = rec.Seq
			r.end += n
			continue
		}
		r.err = ferr
		if ferr != io.EOF {
			r.garbageEnd = int64(lastNonZero(data)) + 1
		}
		return r, nil
	}
}

// nextFrame decodes the frame at off, which must hold seq want. It returns the
// record and the frame size, or io.EOF (only zeros from off to the end),
// io.ErrUnexpectedEOF (a bad or partial frame with nothing written after it)
// or an error wrapping ErrCRCMismatch.
func nextFrame(data []byte, off int64, want Seq) (Record, int64, error) {
	rest := data[off:]
	if len(rest) < 16 || isZero(rest[:16]) {
		if isZero(rest) {
			return Record{}, 0, io.EOF
		}
		if len(rest) < 16 {
			return Record{}, 0, io.ErrUnexpectedEOF
		}
		return Record{}, 0, fmt.Errorf("%w: data after end marker at offset %d", ErrCRCMismatch, off)
	}
	n := int64(binary.LittleEndian.Uint32(rest[4:8]))
	if int64(len(rest)) < frameHeader+n {
		// Partial frame at the end of the file.
		return Record{}, 0, io.ErrUnexpectedEOF
	}
	fs := frameSize(int(n))
	crc := binary.LittleEndian.Uint32(rest[0:4])
	seq := Seq(binary.LittleEndian.Uint64(rest[8:16]))
	typ := RecordType(rest[16])
	ok := crc32.Checksum(rest[4:frameHeader+n], castagnoli) == crc && seq == want && typ != 0
	if ok && fs <= int64(len(rest)) && !isZero(rest[frameHeader+n:fs]) {
		ok = false // padding must be zero
	}
	if ok {
		return Record{Seq: seq, Type: typ, Payload: rest[frameHeader : frameHeader+n : frameHeader+n]}, min(fs, int64(len(rest))), nil
	}
	if fs >= int64(len(rest)) || isZero(rest[fs:]) {
		return Record{}, 0, io.ErrUnexpectedEOF
	}
	if crc32.Checksum(rest[4:frameHeader+n], castagnoli) == crc && seq != want {
		return Record{}, 0, fmt.Errorf("%w: seq %d at offset %d, want %d", ErrCRCMismatch, seq, off, want)
	}
	return Record{}, 0, fmt.Errorf("%w: bad frame at offset %d", ErrCRCMismatch, off)
}

// ReadSegment decodes a whole segment file image and calls fn for every valid
// record. It returns nil after a clean end, io.ErrUnexpectedEOF for a torn
// tail, an error wrapping ErrCRCMismatch for corruption, or ErrBadHeader.
// It is meant for tools and tests; the Journal uses the same decoder.
func ReadSegment(data []byte, fn func(Record) error) error {
	r, err := scanSegment(data, fn)
	if err != nil {
		return err
	}
	if r.err == io.EOF {
		return nil
	}
	return r.err
}
