package changelog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"
	"sync"

	"github.com/klauspost/compress/zstd"

	"drfs/journal"
)

// encoderLevel is the zstd level of the body, chosen over SpeedFastest with
// BenchmarkEncodeLevel (see doc.go).
const encoderLevel = zstd.SpeedDefault

var encoders = sync.Pool{New: func() any {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(encoderLevel),
		zstd.WithWindowSize(4<<20), // <= MaxWindow
		zstd.WithEncoderCRC(true))
	if err != nil {
		panic(fmt.Sprintf("changelog: zstd encoder: %v", err)) // static options
	}
	return e
}}

// Encode writes l to w, validating the header and every op first so that
// whatever it writes decodes: it refuses (with ErrBadLog) an op that
// journal.DecodeOp would refuse, an OpHot and an op type it doesn't know,
// and writes nothing then. The body is compressed in memory before
// anything is written, because the header carries its length.
func Encode(w io.Writer, l *Log) (Stats, error) {
	if err := l.Header.validate(); err != nil {
		return Stats{}, fmt.Errorf("%w: encode: %v", ErrBadLog, err)
	}
	if l.Created.Before(minCreated) || l.Created.After(maxCreated) {
		return Stats{}, fmt.Errorf("%w: encode: created time %v not representable in Unix ns", ErrBadLog, l.Created)
	}
	// Payloads of all ops but writes, whose data is written without a copy.
	payloads := make([][]byte, len(l.Ops))
	var raw int64
	for i, op := range l.Ops {
		p, n, err := payload(op)
		if err != nil {
			return Stats{}, fmt.Errorf("%w: encode op %d: %v", ErrBadLog, i, err)
		}
		payloads[i] = p
		raw += 1 + int64(uvarintLen(uint64(n))) + int64(n)
	}

	var body bytes.Buffer
	body.Grow(int(min(raw/2+64, 64<<20)))
	zw := encoders.Get().(*zstd.Encoder)
	zw.ResetContentSize(&body, raw)
	var rec [1 + binary.MaxVarintLen64]byte
	var err error
	for i, op := range l.Ops {
		p := payloads[i]
		n := len(p)
		wr, isWrite := op.(journal.OpWrite)
		if isWrite {
			n += len(wr.Data)
		}
		rec[0] = byte(op.Type())
		h := binary.PutUvarint(rec[1:], uint64(n)) + 1
		if _, err = zw.Write(rec[:h]); err != nil {
			break
		}
		if _, err = zw.Write(p); err != nil {
			break
		}
		if isWrite {
			if _, err = zw.Write(wr.Data); err != nil {
				break
			}
		}
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	zw.Reset(nil) // drop the reference to body before pooling
	encoders.Put(zw)
	if err != nil {
		return Stats{}, fmt.Errorf("compress body: %w", err)
	}

	hdr := appendHeader(make([]byte, 0, prefixSize+len(l.VolumeID)+fixedFields+crcSize),
		&l.Header, uint64(len(l.Ops)), uint64(raw), uint64(body.Len()))
	crc := crc32.Update(crc32.Checksum(hdr, castagnoli), castagnoli, body.Bytes())
	var trailer [trailerSize]byte
	binary.LittleEndian.PutUint32(trailer[:], crc)
	copy(trailer[crcSize:], endMagic)

	st := Stats{Ops: len(l.Ops), RawBytes: raw, EncodedBytes: int64(len(hdr) + body.Len() + trailerSize)}
	for _, part := range [][]byte{hdr, body.Bytes(), trailer[:]} {
		if _, err := w.Write(part); err != nil {
			return Stats{}, fmt.Errorf("write change log: %w", err)
		}
	}
	return st, nil
}

// Marshal returns the encoding of l (see Encode).
func Marshal(l *Log) ([]byte, Stats, error) {
	var b bytes.Buffer
	st, err := Encode(&b, l)
	if err != nil {
		return nil, Stats{}, err
	}
	return b.Bytes(), st, nil
}

// payload validates op and returns its record payload and length. For an
// OpWrite the payload is only the part before the data (the length
// includes the data).
func payload(op journal.Op) ([]byte, int, error) {
	switch o := op.(type) {
	case journal.OpWrite:
		if err := journal.ValidPath(o.Path); err != nil {
			return nil, 0, fmt.Errorf("write: %v", err)
		}
		if o.Off < 0 {
			return nil, 0, fmt.Errorf("write: negative offset %d", o.Off)
		}
		p := journal.AppendWriteHeader(nil, o.Path, o.Ino, o.Off)
		return p, len(p) + len(o.Data), nil
	case journal.OpHot:
		return nil, 0, errors.New("hot op in a change log")
	default:
		// Ops are value types: a pointer to one would encode, but decode as the value.
		if t := reflect.TypeOf(op); t == nil || t.Kind() != reflect.Struct {
			return nil, 0, fmt.Errorf("unsupported op type %T", op)
		}
		p := journal.EncodeOp(op)
		if _, err := journal.DecodeOp(op.Type(), p); err != nil {
			return nil, 0, err
		}
		return p, len(p), nil
	}
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
