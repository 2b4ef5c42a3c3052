package changelog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"

	"drfs/journal"
)

// maxCompressed is the largest compressed body a raw body of n bytes can
// need: zstd's ZSTD_COMPRESSBOUND plus a frame header and checksum.
func maxCompressed(n int64) int64 {
	b := n + n>>8 + 64
	if n < 128<<10 {
		b += (128<<10 - n) >> 11
	}
	return b
}

// Decode reads a whole log from r, up to its end, and verifies all of it
// (checksums, limits, every record) before returning anything: on error the
// Log is nil. The errors wrap ErrVersion, ErrChecksum, ErrTruncated,
// ErrTooLarge or ErrBadLog, or are I/O errors from r.
//
// Memory is bounded by lim: sizes declared in the header are checked
// against it before anything is allocated, buffers grow only as input
// actually arrives, and the body is never decompressed past its declared
// length.
func Decode(r io.Reader, lim Limits) (*Log, error) {
	lim = lim.withDefaults()
	h, hd, err := decodeHeader(r, lim)
	if err != nil {
		return nil, err
	}
	hdr, opCount, rawLen, compLen := hd.raw, hd.opCount, hd.rawLen, hd.compLen

	// Body and trailer. The buffer grows as bytes arrive, so a header that
	// lies about the length costs no more than the bytes actually sent.
	var body bytes.Buffer
	body.Grow(int(min(compLen, 1<<20)))
	if n, err := io.CopyN(&body, r, int64(compLen)); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%w: body: read %d of %d bytes: %w", ErrTruncated, n, compLen, io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("read body: %w", err)
	}
	var trailer [trailerSize]byte
	if _, err := io.ReadFull(r, trailer[:]); err != nil {
		return nil, truncated("trailer", err)
	}
	crc := crc32.Update(crc32.Checksum(hdr, castagnoli), castagnoli, body.Bytes())
	if want := binary.LittleEndian.Uint32(trailer[:]); crc != want {
		return nil, fmt.Errorf("%w: log (got %08x, want %08x)", ErrChecksum, crc, want)
	}
	if string(trailer[crcSize:]) != endMagic {
		return nil, fmt.Errorf("%w: bad end magic %q", ErrChecksum, trailer[crcSize:])
	}
	var one [1]byte
	switch n, err := io.ReadFull(r, one[:]); {
	case n > 0:
		return nil, fmt.Errorf("%w: trailing data after the end magic", ErrBadLog)
	case err != io.EOF:
		return nil, fmt.Errorf("read after log: %w", err)
	}

	raw, err := decompress(body.Bytes(), int64(rawLen), lim)
	if err != nil {
		return nil, err
	}
	ops, err := parseRecords(raw, opCount)
	if err != nil {
		return nil, err
	}
	return &Log{Header: h, Ops: ops}, nil
}

// headerInfo is what decodeHeader learns besides the Header.
type headerInfo struct {
	raw                      []byte // the header bytes, covered by the log's CRC
	opCount, rawLen, compLen uint64
}

// decodeHeader reads and checks a log's header from r against lim.
func decodeHeader(r io.Reader, lim Limits) (Header, headerInfo, error) {
	// Magic, version, kind, reserved, volume id length.
	hdr := make([]byte, prefixSize, prefixSize+MaxVolumeIDLen+fixedFields+crcSize)
	n, err := io.ReadFull(r, hdr)
	if n >= len(magic) && string(hdr[:len(magic)]) != magic {
		return Header{}, headerInfo{}, fmt.Errorf("%w: bad magic %q, not a change log", ErrBadLog, hdr[:len(magic)])
	}
	if n >= len(magic)+2 {
		if v := binary.LittleEndian.Uint16(hdr[8:]); v != Version {
			return Header{}, headerInfo{}, fmt.Errorf("%w: version %d (want %d)", ErrVersion, v, Version)
		}
	}
	if err != nil {
		return Header{}, headerInfo{}, truncated("header", err)
	}
	idLen := int(hdr[12])
	if idLen > MaxVolumeIDLen {
		// Checked before the CRC so the read below stays bounded. No
		// encoder writes this, so it is taken for corruption.
		return Header{}, headerInfo{}, fmt.Errorf("%w: volume id length %d > %d (corrupt header)", ErrChecksum, idLen, MaxVolumeIDLen)
	}
	hdr = hdr[:prefixSize+idLen+fixedFields+crcSize]
	if _, err := io.ReadFull(r, hdr[prefixSize:]); err != nil {
		return Header{}, headerInfo{}, truncated("header", err)
	}
	crcOff := len(hdr) - crcSize
	if got, want := crc32.Checksum(hdr[:crcOff], castagnoli), binary.LittleEndian.Uint32(hdr[crcOff:]); got != want {
		return Header{}, headerInfo{}, fmt.Errorf("%w: header (got %08x, want %08x)", ErrChecksum, got, want)
	}

	var h Header
	h.Kind = Kind(hdr[10])
	h.VolumeID = string(hdr[prefixSize : prefixSize+idLen])
	f := hdr[prefixSize+idLen:]
	field := func(i int) uint64 { return binary.LittleEndian.Uint64(f[8*i:]) }
	h.Generation, h.FromSeq, h.ToSeq = field(0), field(1), field(2)
	h.Created = time.Unix(0, int64(field(3))).UTC()
	opCount, rawLen, compLen := field(4), field(5), field(6)
	if hdr[11] != 0 {
		return Header{}, headerInfo{}, fmt.Errorf("%w: reserved header byte %#02x", ErrBadLog, hdr[11])
	}
	if err := h.validate(); err != nil {
		return Header{}, headerInfo{}, fmt.Errorf("%w: header: %v", ErrBadLog, err)
	}
	if rawLen > uint64(lim.MaxBodyBytes) {
		return Header{}, headerInfo{}, fmt.Errorf("%w: body of %d bytes exceeds limit %d", ErrTooLarge, rawLen, lim.MaxBodyBytes)
	}
	if opCount > uint64(lim.MaxOps) {
		return Header{}, headerInfo{}, fmt.Errorf("%w: %d ops exceed limit %d", ErrTooLarge, opCount, lim.MaxOps)
	}
	if bound := maxCompressed(int64(rawLen)); compLen > uint64(bound) {
		return Header{}, headerInfo{}, fmt.Errorf("%w: compressed body of %d bytes for %d raw bytes (max %d)", ErrTooLarge, compLen, rawLen, bound)
	}

	return h, headerInfo{raw: hdr, opCount: opCount, rawLen: rawLen, compLen: compLen}, nil
}

// Unmarshal decodes the log b (see Decode). The Log does not alias b.
func Unmarshal(b []byte, lim Limits) (*Log, error) {
	return Decode(bytes.NewReader(b), lim)
}

// truncated reports a short read of what; it also wraps io.ErrUnexpectedEOF.
func truncated(what string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: %s: %w", ErrTruncated, what, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// decompress inflates body, which must be exactly rawLen bytes. It stops
// reading as soon as the output would pass rawLen (a decompression bomb),
// and grows its buffer only as output is produced.
func decompress(body []byte, rawLen int64, lim Limits) ([]byte, error) {
	zr, err := zstd.NewReader(bytes.NewReader(body),
		zstd.WithDecoderConcurrency(1),
		// The window is bounded by MaxWindow; the decoded size by the
		// checks below. MaxMemory must not be below the window or zstd
		// refuses frames a small MaxBodyBytes would otherwise accept.
		zstd.WithDecoderMaxWindow(MaxWindow),
		zstd.WithDecoderMaxMemory(uint64(max(lim.MaxBodyBytes, MaxWindow))))
	if err != nil {
		return nil, fmt.Errorf("zstd reader: %w", err)
	}
	defer zr.Close()
	raw := make([]byte, 0, min(rawLen, 16<<20))
	for int64(len(raw)) < rawLen {
		if len(raw) == cap(raw) {
			grown := make([]byte, len(raw), min(2*int64(cap(raw)), rawLen))
			raw = grown[:copy(grown, raw)]
		}
		n, err := zr.Read(raw[len(raw):cap(raw)])
		raw = raw[:len(raw)+n]
		if err == io.EOF {
			return nil, fmt.Errorf("%w: body decompresses to %d bytes, header says %d", ErrBadLog, len(raw), rawLen)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: decompress body: %w", ErrBadLog, err)
		}
	}
	// The stream must end exactly here (and its checksum must verify,
	// which zstd does at the end of the frame).
	var one [1]byte
	for {
		n, err := zr.Read(one[:])
		if n > 0 {
			return nil, fmt.Errorf("%w: body decompresses to more than the declared %d bytes", ErrTooLarge, rawLen)
		}
		if err == io.EOF {
			return raw, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: decompress body: %w", ErrBadLog, err)
		}
	}
}

// parseRecords decodes the records of raw, which must hold exactly want.
func parseRecords(raw []byte, want uint64) ([]journal.Op, error) {
	ops := make([]journal.Op, 0, min(want, uint64(len(raw)/3)))
	off := 0
	for off < len(raw) {
		if uint64(len(ops)) == want {
			return nil, fmt.Errorf("%w: more than the declared %d records", ErrBadLog, want)
		}
		typ := journal.RecordType(raw[off])
		plen, n := binary.Uvarint(raw[off+1:])
		if n <= 0 || n != uvarintLen(plen) {
			return nil, fmt.Errorf("%w: record %d at body offset %d: bad length", ErrBadLog, len(ops), off)
		}
		start := off + 1 + n
		if plen > uint64(len(raw)-start) {
			return nil, fmt.Errorf("%w: record %d at body offset %d: length %d past the end of the body", ErrBadLog, len(ops), off, plen)
		}
		if typ == journal.RecHot {
			return nil, fmt.Errorf("%w: record %d at body offset %d: hot record in a change log", ErrBadLog, len(ops), off)
		}
		end := start + int(plen)
		op, err := journal.DecodeOp(typ, raw[start:end:end])
		if err != nil {
			return nil, fmt.Errorf("%w: record %d at body offset %d: %w", ErrBadLog, len(ops), off, err)
		}
		ops = append(ops, op)
		off = end
	}
	if uint64(len(ops)) != want {
		return nil, fmt.Errorf("%w: %d records, header says %d", ErrBadLog, len(ops), want)
	}
	return ops, nil
}
