package changelog

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"drfs/journal"
)

func TestChangelog_RoundTrip(t *testing.T) {
	for _, kind := range []Kind{KindJournal, KindResync} {
		t.Run(kind.String(), func(t *testing.T) {
			l := testLog()
			l.Kind = kind
			if kind == KindResync {
				l.FromSeq = 0
			}
			b, st, err := Marshal(l)
			if err != nil {
				t.Fatal(err)
			}
			if st.Ops != len(l.Ops) || st.EncodedBytes != int64(len(b)) || st.RawBytes <= 0 {
				t.Errorf("stats %+v for %d bytes, %d ops", st, len(b), len(l.Ops))
			}
			got, err := Unmarshal(b, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			// Decode returns nil for empty slices; normalise the input.
			want := testLog()
			want.Header = l.Header
			want.Ops[3] = journal.OpWrite{Path: "vm1/disk.raw", Ino: 11, Data: []byte{}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip:\n got %s\nwant %s", dump(got), dump(want))
			}
			if !got.Created.Equal(l.Created) || got.Created.Location() != time.UTC {
				t.Errorf("created %v, want %v UTC", got.Created, l.Created)
			}
		})
	}
}

func TestChangelog_RoundTripEmptyAndLarge(t *testing.T) {
	// No ops at all (e.g. a seq range of hot records only).
	l := &Log{Header: testHeader()}
	got, err := Unmarshal(MustMarshal(t, l), Limits{})
	if err != nil || len(got.Ops) != 0 {
		t.Fatalf("empty log: %v, %v", got, err)
	}
	// Incompressible data larger than a zstd block and the window.
	data := make([]byte, 9<<20)
	fillRandom(data, 1)
	l.Ops = []journal.Op{journal.OpWrite{Path: "a", Off: 7, Data: data}}
	b, st, err := Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	if st.EncodedBytes > maxCompressed(st.RawBytes)+int64(headerLen(l.VolumeID)+trailerSize) {
		t.Errorf("encoded %d bytes over bound for %d", st.EncodedBytes, st.RawBytes)
	}
	got, err = Unmarshal(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if w := got.Ops[0].(journal.OpWrite); !bytes.Equal(w.Data, data) || w.Off != 7 {
		t.Error("large write differs")
	}
	// A body limit below the zstd window still accepts a small log.
	if _, err := Unmarshal(MustMarshal(t, testLog()), Limits{MaxBodyBytes: 1024}); err != nil {
		t.Errorf("small limit: %v", err)
	}
}

func TestChangelog_EncodeRefuses(t *testing.T) {
	h := testHeader()
	for _, tc := range []struct {
		name string
		mod  func(*Log)
	}{
		{"hot", func(l *Log) { l.Ops = append(l.Ops, journal.OpHot{Ino: 1}) }},
		{"dotdot", func(l *Log) { l.Ops = []journal.Op{journal.OpWrite{Path: "../x", Data: []byte{1}}} }},
		{"absolute", func(l *Log) { l.Ops = []journal.Op{journal.OpUnlink{Path: "/etc/passwd"}} }},
		{"negative offset", func(l *Log) { l.Ops = []journal.Op{journal.OpWrite{Path: "a", Off: -1}} }},
		{"pointer op", func(l *Log) { l.Ops = []journal.Op{&journal.OpUnlink{Path: "a"}} }},
		{"nil op", func(l *Log) { l.Ops = []journal.Op{nil} }},
		{"empty volume", func(l *Log) { l.VolumeID = "" }},
		{"long volume", func(l *Log) { l.VolumeID = strings.Repeat("v", 65) }},
		{"slash in volume", func(l *Log) { l.VolumeID = "a/b" }},
		{"from > to", func(l *Log) { l.FromSeq, l.ToSeq = 5, 4 }},
		{"journal from 0", func(l *Log) { l.FromSeq = 0 }},
		{"resync from", func(l *Log) { l.Kind = KindResync }},
		{"kind", func(l *Log) { l.Kind = 9 }},
		{"zero created", func(l *Log) { l.Created = time.Time{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Log{Header: h, Ops: allOps()}
			tc.mod(l)
			var buf bytes.Buffer
			if _, err := Encode(&buf, l); !errors.Is(err, ErrBadLog) {
				t.Errorf("Encode = %v, want ErrBadLog", err)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes", buf.Len())
			}
		})
	}
	l := testLog()
	l.VolumeID = strings.Repeat("v", 64)
	MustMarshal(t, l)
}

// corruptCase is one corrupt input and the sentinel Decode must return.
type corruptCase struct {
	name string
	data []byte
	lim  Limits
	want error
}

func corruptCases(tb testing.TB) []corruptCase {
	good := MustMarshal(tb, testLog())
	hl := headerLen(testHeader().VolumeID)
	bodyEnd := len(good) - trailerSize
	cut := func(n int) []byte { return bytes.Clone(good[:n]) }
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		return b
	}
	withRecords := func(recs ...[]byte) []byte {
		return newRawLog(bytes.Join(recs, nil), uint64(len(recs))).bytes(tb)
	}
	raw := func(mod func(*rawLog)) []byte {
		r := newRawLog(record(journal.RecUnlink, journal.EncodeOp(journal.OpUnlink{Path: "a"})), 1)
		mod(r)
		return r.bytes(tb)
	}
	unlink := record(journal.RecUnlink, journal.EncodeOp(journal.OpUnlink{Path: "a"}))
	cases := []corruptCase{
		{"truncated/empty", nil, Limits{}, ErrTruncated},
		{"truncated/magic", cut(5), Limits{}, ErrTruncated},
		{"truncated/prefix", cut(12), Limits{}, ErrTruncated},
		{"truncated/header", cut(hl - 1), Limits{}, ErrTruncated},
		{"truncated/no-body", cut(hl), Limits{}, ErrTruncated},
		{"truncated/body", cut((hl + bodyEnd) / 2), Limits{}, ErrTruncated},
		{"truncated/no-trailer", cut(bodyEnd), Limits{}, ErrTruncated},
		{"truncated/trailer-crc", cut(bodyEnd + 2), Limits{}, ErrTruncated},
		{"truncated/end-magic", cut(len(good) - 1), Limits{}, ErrTruncated},
		{"flip/magic", flip(0), Limits{}, ErrBadLog},
		{"flip/version", flip(9), Limits{}, ErrVersion},
		{"flip/kind", flip(10), Limits{}, ErrChecksum},
		{"flip/id-len", flip(12), Limits{}, ErrChecksum},
		{"flip/volume-id", flip(14), Limits{}, ErrChecksum},
		{"flip/to-seq", flip(hl - 30), Limits{}, ErrChecksum},
		{"flip/header-crc", flip(hl - 1), Limits{}, ErrChecksum},
		{"flip/body", flip((hl + bodyEnd) / 2), Limits{}, ErrChecksum},
		{"flip/trailer-crc", flip(bodyEnd + 1), Limits{}, ErrChecksum},
		{"flip/end-magic", flip(len(good) - 3), Limits{}, ErrChecksum},
		{"trailing-garbage", append(bytes.Clone(good), 0), Limits{}, ErrBadLog},
		{"two-logs", append(bytes.Clone(good), good...), Limits{}, ErrBadLog},
		{"version-2", raw(func(r *rawLog) { r.version = 2 }), Limits{}, ErrVersion},
		{"reserved", raw(func(r *rawLog) { r.reserved = 1 }), Limits{}, ErrBadLog},
		{"bad-header-crc", raw(func(r *rawLog) { r.badHdrCRC = true }), Limits{}, ErrChecksum},
		{"bad-log-crc", raw(func(r *rawLog) { r.badLogCRC = true }), Limits{}, ErrChecksum},
		{"kind-3", raw(func(r *rawLog) { r.h.Kind = 3 }), Limits{}, ErrBadLog},
		{"empty-volume", raw(func(r *rawLog) { r.h.VolumeID = "" }), Limits{}, ErrBadLog},
		{"volume-slash", raw(func(r *rawLog) { r.h.VolumeID = "../x" }), Limits{}, ErrBadLog},
		{"from-gt-to", raw(func(r *rawLog) { r.h.FromSeq, r.h.ToSeq = 9, 8 }), Limits{}, ErrBadLog},
		{"too-large/raw", raw(func(r *rawLog) {}), Limits{MaxBodyBytes: 4}, ErrTooLarge},
		{"too-large/raw-default", raw(func(r *rawLog) { r.rawLen = DefaultMaxBodyBytes + 1 }), Limits{}, ErrTooLarge},
		{"too-large/ops", raw(func(r *rawLog) { r.ops = 1 << 40 }), Limits{}, ErrTooLarge},
		{"too-large/ops-limit", withRecords(unlink, unlink), Limits{MaxOps: 1}, ErrTooLarge},
		{"too-large/compressed", raw(func(r *rawLog) { r.compLen = math.MaxInt64 }), Limits{}, ErrTooLarge},
		{"lying/raw-short", raw(func(r *rawLog) { r.rawLen = 2; r.zstdNoSize = true }), Limits{}, ErrTooLarge},
		{"lying/raw-long", raw(func(r *rawLog) { r.rawLen = 100; r.zstdNoSize = true }), Limits{}, ErrBadLog},
		{"lying/frame-size", raw(func(r *rawLog) { r.rawLen = 100 }), Limits{}, ErrBadLog},
		{"lying/ops-more", raw(func(r *rawLog) { r.ops = 2 }), Limits{}, ErrBadLog},
		{"lying/ops-fewer", newRawLog(append(bytes.Clone(unlink), unlink...), 1).bytes(tb), Limits{}, ErrBadLog},
		{"not-zstd", raw(func(r *rawLog) { r.body = []byte("not a zstd frame"); r.rawLen = 4 }), Limits{}, ErrBadLog},
		{"path/dotdot", withRecords(record(journal.RecWrite, journal.EncodeOp(journal.OpWrite{Path: "../x", Data: []byte("pwned")}))), Limits{}, ErrBadLog},
		{"path/dotdot-inner", withRecords(unlink, record(journal.RecRename, journal.EncodeOp(journal.OpRename{OldPath: "a", NewPath: "b/../../x"}))), Limits{}, ErrBadLog},
		{"path/absolute", withRecords(record(journal.RecCreate, journal.EncodeOp(journal.OpCreate{Path: "/etc/passwd"}))), Limits{}, ErrBadLog},
		{"path/link-absolute", withRecords(record(journal.RecLink, journal.EncodeOp(journal.OpLink{OldPath: "/etc/shadow", NewPath: "x"}))), Limits{}, ErrBadLog},
		{"record/hot", withRecords(record(journal.RecHot, journal.EncodeOp(journal.OpHot{Ino: 1, Region: 2}))), Limits{}, ErrBadLog},
		{"record/type-0", withRecords(record(0, nil)), Limits{}, ErrBadLog},
		{"record/type-99", withRecords(record(99, []byte{1})), Limits{}, ErrBadLog},
		{"record/past-end", withRecords([]byte{byte(journal.RecUnlink), 9, 1, 'a', 0}), Limits{}, ErrBadLog},
		{"record/non-minimal-len", withRecords([]byte{byte(journal.RecUnlink), 0x83, 0, 1, 'a', 0}), Limits{}, ErrBadLog},
		{"record/len-cut", withRecords([]byte{byte(journal.RecUnlink), 0x83}), Limits{}, ErrBadLog},
		{"record/bad-payload", withRecords(record(journal.RecUnlink, []byte{1, 'a', 0, 0})), Limits{}, ErrBadLog},
	}
	return cases
}

func TestChangelog_DecodeCorrupt(t *testing.T) {
	for _, tc := range corruptCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Unmarshal(tc.data, tc.lim)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if l != nil {
				t.Errorf("returned a Log with the error")
			}
			if tc.want == ErrTruncated && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("truncation %v does not wrap io.ErrUnexpectedEOF", err)
			}
			if !strings.HasPrefix(err.Error(), "changelog: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestChangelog_ErrorMessages(t *testing.T) {
	r := newRawLog(nil, 0)
	r.version = 7
	_, err := Unmarshal(r.bytes(t), Limits{})
	if err == nil || !strings.Contains(err.Error(), "version 7") {
		t.Errorf("version error %q does not name version 7", err)
	}
	r = newRawLog(nil, 0)
	r.badLogCRC = true
	_, err = Unmarshal(r.bytes(t), Limits{})
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch: log (got ") {
		t.Errorf("checksum error %q", err)
	}
	_, err = Unmarshal(newRawLog(record(journal.RecUnlink, journal.EncodeOp(journal.OpUnlink{Path: "../x"})), 1).bytes(t), Limits{})
	if err == nil || !strings.Contains(err.Error(), "escapes the root") || !errors.Is(err, journal.ErrBadOp) {
		t.Errorf("path error %q", err)
	}
}

// errReader returns data, then err.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestChangelog_DecodeReadError(t *testing.T) {
	good := MustMarshal(t, testLog())
	boom := errors.New("connection reset")
	for _, n := range []int{0, 20, len(good) / 2, len(good) - 3, len(good)} {
		_, err := Decode(&errReader{data: good[:n], err: boom}, Limits{})
		if !errors.Is(err, boom) {
			t.Errorf("cut at %d: err = %v, want the reader's error", n, err)
		}
	}
	// One byte at a time is fine.
	if _, err := Decode(iotestOneByte(bytes.NewReader(good)), Limits{}); err != nil {
		t.Errorf("one-byte reader: %v", err)
	}
}

type oneByteReader struct{ r io.Reader }

func (r oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return r.r.Read(p[:1])
}

func iotestOneByte(r io.Reader) io.Reader { return oneByteReader{r} }

// TestChangelog_DecompressionBomb feeds logs with valid CRCs whose body
// inflates far past what the header declares, and checks they are refused
// without the decoder allocating the inflated size.
func TestChangelog_DecompressionBomb(t *testing.T) {
	const inflated = 256 << 20
	zeros := make([]byte, inflated)
	body := zstdCompress(t, zeros, false)
	zeros = nil
	t.Logf("%d MiB of zeros compress to %d bytes", inflated>>20, len(body))
	for _, tc := range []struct {
		name   string
		rawLen int64
		lim    Limits
	}{
		{"past-declared", 4096, Limits{}},
		{"past-declared-large", 8 << 20, Limits{}},
		{"past-limit", 4096, Limits{MaxBodyBytes: 1 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRawLog(nil, 1)
			r.body, r.rawLen = body, tc.rawLen
			data := r.bytes(t)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			l, err := Unmarshal(data, tc.lim)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTooLarge) || l != nil {
				t.Fatalf("Unmarshal = %v, %v; want ErrTooLarge", l, err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 48<<20 {
				t.Errorf("allocated %d MiB decoding a bomb", alloc>>20)
			}
		})
	}
	// Declared larger than the limit: refused before reading the body.
	r := newRawLog(nil, 1)
	r.body, r.rawLen = body, inflated
	if _, err := Unmarshal(r.bytes(t), Limits{MaxBodyBytes: 1 << 20}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("declared over limit: %v", err)
	}
}

// TestChangelog_LyingLengthNoAlloc checks that a header declaring a huge
// body costs only the bytes actually sent.
func TestChangelog_LyingLengthNoAlloc(t *testing.T) {
	r := newRawLog(nil, 0)
	r.rawLen, r.compLen = 1<<30, 1<<30
	data := r.bytes(t)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Unmarshal(data, Limits{})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("allocated %d MiB for a 1 GiB claim", alloc>>20)
	}
}

func TestChangelog_FileName(t *testing.T) {
	h := testHeader()
	if got, want := FileName(h), "vol-1.a_b-g0000000000000003-0000000000000064-00000000000000c8.dcl"; got != want {
		t.Errorf("FileName = %q, want %q", got, want)
	}
	h.Kind, h.FromSeq = KindResync, 0
	a, b := FileName(h), FileName(h)
	if a == b || !strings.HasPrefix(a, "vol-1.a_b-g0000000000000003-resync-") || !strings.HasSuffix(a, ".dcl") {
		t.Errorf("resync names %q, %q", a, b)
	}
}

func TestChangelog_WriteReadFile(t *testing.T) {
	dir := t.TempDir()
	l := testLog()
	path, st, err := WriteFile(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != FileName(l.Header) {
		t.Errorf("path %s", path)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != st.EncodedBytes {
		t.Fatalf("stat: %v, %v (want %d bytes)", fi, err, st.EncodedBytes)
	}
	got, err := ReadFile(path, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if dump(got) != dump(l) {
		t.Errorf("ReadFile:\n%s\nwant\n%s", dump(got), dump(l))
	}
	// Writing the same range again replaces it; nothing else is left.
	if _, _, err := WriteFile(dir, l); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("%d entries in dir, want 1", len(ents))
	}
	// A failed encode leaves no temp file.
	bad := testLog()
	bad.Ops = append(bad.Ops, journal.OpHot{})
	if _, _, err := WriteFile(dir, bad); !errors.Is(err, ErrBadLog) {
		t.Errorf("WriteFile(bad) = %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d entries after a failed write", len(ents))
	}
	// A corrupt file names itself.
	data, _ := os.ReadFile(path)
	data[len(data)/2] ^= 1
	os.WriteFile(path, data, 0o644)
	if _, err := ReadFile(path, Limits{}); !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadFile(corrupt) = %v", err)
	}
	if _, _, err := WriteFile(filepath.Join(dir, "missing"), l); err == nil {
		t.Error("WriteFile into a missing dir succeeded")
	}
}
