package journal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSegments returns seed segment images: valid, torn and corrupt.
func fuzzSegments(tb testing.TB) [][]byte {
	var seeds [][]byte
	dirs, _ := filepath.Glob(filepath.Join(goldenDir, "*"))
	for _, d := range dirs {
		segs, _ := filepath.Glob(filepath.Join(d, "*"+segSuffix))
		for _, s := range segs {
			if b, err := os.ReadFile(s); err == nil {
				seeds = append(seeds, b)
			}
		}
	}
	hdr := make([]byte, segHeaderSize)
	encodeSegHeader(hdr, 1)
	seeds = append(seeds, hdr, nil, []byte(segMagic))
	return seeds
}

func FuzzReadSegment(f *testing.F) {
	for _, s := range fuzzSegments(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var prev Seq
		n := 0
		res, err := scanSegment(data, func(r Record) error {
			if prev != 0 && r.Seq != prev+1 {
				return fmt.Errorf("seq %d after %d", r.Seq, prev)
			}
			if r.Type == 0 {
				return fmt.Errorf("type 0 accepted")
			}
			prev = r.Seq
			n++
			return nil
		})
		if err != nil {
			if errors.Is(err, ErrBadHeader) {
				return
			}
			t.Fatal(err)
		}
		if res.end > int64(len(data)) {
			t.Fatalf("end %d beyond %d bytes", res.end, len(data))
		}
		switch {
		case res.err == io.EOF:
			if !isZero(data[res.end:]) {
				t.Fatal("clean end with data after it")
			}
		case res.err == io.ErrUnexpectedEOF, errors.Is(res.err, ErrCRCMismatch):
			if res.garbageEnd <= res.end {
				t.Fatalf("bad tail at %d but garbage ends at %d", res.end, res.garbageEnd)
			}
		default:
			t.Fatalf("unexpected outcome %v", res.err)
		}
		if err := ReadSegment(data, nil); (err == nil) != (res.err == io.EOF) {
			t.Fatalf("ReadSegment = %v, scan = %v", err, res.err)
		}
		// Recovery must leave exactly the valid prefix.
		if res.err != io.EOF {
			fixed := bytes.Clone(data)
			clear(fixed[res.end:])
			r2, _ := scanSegment(fixed, nil)
			if r2.err != io.EOF || r2.last != res.last {
				t.Fatalf("after cut: %v, last %d want %d", r2.err, r2.last, res.last)
			}
		}
	})
}

func FuzzDecodeOp(f *testing.F) {
	for _, op := range sampleOps {
		f.Add(byte(op.Type()), EncodeOp(op))
	}
	f.Add(byte(0), []byte{})
	f.Add(byte(RecWrite), []byte{1, '.', 0})
	f.Fuzz(func(t *testing.T, typ byte, payload []byte) {
		op, err := DecodeOp(RecordType(typ), payload)
		if err != nil {
			return
		}
		if op.Type() != RecordType(typ) {
			t.Fatalf("type %d decoded as %T", typ, op)
		}
		// Strict decoding means encodings are canonical.
		if b := EncodeOp(op); !bytes.Equal(b, payload) {
			t.Fatalf("re-encoding %#v: %x, want %x", op, b, payload)
		}
	})
}
