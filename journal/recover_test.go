package journal

import (
	"drfs/internal/logtest"
	"encoding/binary"
	"errors"
	"flag"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "regenerate golden files under testdata/")

const goldenDir = "../testdata/journal"

// goldenSegSize keeps golden segments small enough to commit.
const goldenSegSize = 1024

// goldenCase builds one case directory from a copy of the valid journal.
type goldenCase struct {
	name string
	// mutate damages the segment files in dir; segs are their names in order.
	mutate func(t *testing.T, dir string, segs []string)
	// scanSeg is the index (negative: from the end) of the segment whose
	// ReadSegment outcome is checked against wantScan.
	scanSeg  int
	wantScan error // nil, io.ErrUnexpectedEOF or ErrCRCMismatch
	// wantOpen is the error Open must fail with, or nil.
	wantOpen error
	// wantLast computes the LastSeq expected after recovery.
	wantLast func(b goldenBase) Seq
	wantCut  bool // bytes must be cut and saved under broken/
}

// goldenBase describes the valid journal every case starts from.
type goldenBase struct {
	firsts []Seq // first seq of each segment
	last   Seq
}

var goldenCases = []goldenCase{
	{
		name: "valid", mutate: func(*testing.T, string, []string) {},
		scanSeg: -1, wantLast: func(b goldenBase) Seq { return b.last },
	},
	{
		// A crash in the middle of copying the last frame.
		name: "torn-frame",
		mutate: func(t *testing.T, dir string, segs []string) {
			editSeg(t, dir, segs[len(segs)-1], func(data []byte, offs []int64, end int64) {
				last := offs[len(offs)-1]
				clear(data[last+(end-last)/2 : end])
			})
		},
		scanSeg: -1, wantScan: io.ErrUnexpectedEOF, wantCut: true,
		wantLast: func(b goldenBase) Seq { return b.last - 1 },
	},
	{
		// A file cut short in the middle of its last frame.
		name: "truncated-file",
		mutate: func(t *testing.T, dir string, segs []string) {
			p := filepath.Join(dir, segs[len(segs)-1])
			_, offs, _ := segFrames(t, p)
			if err := os.Truncate(p, offs[len(offs)-1]+frameHeader+1); err != nil {
				t.Fatal(err)
			}
		},
		scanSeg: -1, wantScan: io.ErrUnexpectedEOF, wantCut: true,
		wantLast: func(b goldenBase) Seq { return b.last - 1 },
	},
	{
		name: "flipped-last-record",
		mutate: func(t *testing.T, dir string, segs []string) {
			editSeg(t, dir, segs[len(segs)-1], func(data []byte, offs []int64, end int64) {
				data[offs[len(offs)-1]+frameHeader] ^= 0x40
			})
		},
		scanSeg: -1, wantScan: io.ErrUnexpectedEOF, wantCut: true,
		wantLast: func(b goldenBase) Seq { return b.last - 1 },
	},
	{
		// Corruption followed by valid records in the last segment: the
		// tail from the bad frame on is cut and saved.
		name: "flipped-middle-last-segment",
		mutate: func(t *testing.T, dir string, segs []string) {
			editSeg(t, dir, segs[len(segs)-1], func(data []byte, offs []int64, end int64) {
				data[offs[0]+9] ^= 0x01 // inside the seq field
			})
		},
		scanSeg: -1, wantScan: ErrCRCMismatch, wantCut: true,
		wantLast: func(b goldenBase) Seq { return b.firsts[len(b.firsts)-1] - 1 },
	},
	{
		name: "garbage-after-tail",
		mutate: func(t *testing.T, dir string, segs []string) {
			editSeg(t, dir, segs[len(segs)-1], func(data []byte, offs []int64, end int64) {
				copy(data[end+64:], "not a frame, just garbage after the end of the log")
			})
		},
		scanSeg: -1, wantScan: ErrCRCMismatch, wantCut: true,
		wantLast: func(b goldenBase) Seq { return b.last },
	},
	{
		// A valid CRC with the wrong seq: stale data, not ours.
		name: "stale-seq",
		mutate: func(t *testing.T, dir string, segs []string) {
			editSeg(t, dir, segs[len(segs)-1], func(data []byte, offs []int64, end int64) {
				f := data[offs[1]:]
				binary.LittleEndian.PutUint64(f[8:16], binary.LittleEndian.Uint64(f[8:16])+100)
				n := binary.LittleEndian.Uint32(f[4:8])
				binary.LittleEndian.PutUint32(f[0:4], crc32.Checksum(f[4:frameHeader+n], castagnoli))
			})
		},
		scanSeg: -1, wantScan: ErrCRCMismatch, wantCut: true,
		wantLast: func(b goldenBase) Seq { return b.firsts[len(b.firsts)-1] },
	},
	{
		name: "corrupt-earlier-segment",
		mutate: func(t *testing.T, dir string, segs []string) {
			editSeg(t, dir, segs[0], func(data []byte, offs []int64, end int64) {
				data[offs[1]+frameHeader+1] ^= 0xff
			})
		},
		scanSeg: 0, wantScan: ErrCRCMismatch, wantOpen: ErrCRCMismatch,
	},
	{
		// Acknowledged records at the end of an earlier segment are gone:
		// never cut silently.
		name: "torn-earlier-segment",
		mutate: func(t *testing.T, dir string, segs []string) {
			editSeg(t, dir, segs[0], func(data []byte, offs []int64, end int64) {
				clear(data[offs[len(offs)-1]+4 : end])
			})
		},
		scanSeg: 0, wantScan: io.ErrUnexpectedEOF, wantOpen: io.ErrUnexpectedEOF,
	},
	{
		// An append in flight across a rollover: the second-to-last segment
		// is torn, so nothing in the last one was acknowledged.
		name: "torn-before-last-segment",
		mutate: func(t *testing.T, dir string, segs []string) {
			editSeg(t, dir, segs[len(segs)-2], func(data []byte, offs []int64, end int64) {
				clear(data[offs[len(offs)-1]+20 : end])
			})
		},
		scanSeg: -2, wantScan: io.ErrUnexpectedEOF, wantCut: true,
		wantLast: func(b goldenBase) Seq { return b.firsts[len(b.firsts)-1] - 2 },
	},
	{
		name: "missing-segment",
		mutate: func(t *testing.T, dir string, segs []string) {
			if err := os.Remove(filepath.Join(dir, segs[1])); err != nil {
				t.Fatal(err)
			}
		},
		scanSeg: -1, wantOpen: ErrSeqGap,
	},
	{
		name: "bad-header",
		mutate: func(t *testing.T, dir string, segs []string) {
			editSeg(t, dir, segs[1], func(data []byte, offs []int64, end int64) { data[3] = 'x' })
		},
		scanSeg: 1, wantScan: ErrBadHeader, wantOpen: ErrBadHeader,
	},
}

// segFrames returns a segment's bytes, the offsets of its valid frames and
// the end of the last one.
func segFrames(t *testing.T, path string) ([]byte, []int64, int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	off := int64(segHeaderSize)
	res, err := scanSegment(data, func(r Record) error {
		offs = append(offs, off)
		off += frameSize(len(r.Payload))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return data, offs, res.end
}

func editSeg(t *testing.T, dir, name string, edit func(data []byte, offs []int64, end int64)) {
	t.Helper()
	p := filepath.Join(dir, name)
	data, offs, end := segFrames(t, p)
	if len(offs) < 2 {
		t.Fatalf("%s: only %d records", name, len(offs))
	}
	edit(data, offs, end)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	slices.Sort(m)
	return m
}

// writeValidGolden writes a journal of at least 4 segments whose last one
// holds at least 3 records.
func writeValidGolden(t *testing.T, dir string) {
	j, err := Open(dir, Options{SegmentSize: goldenSegSize})
	if err != nil {
		t.Fatal(err)
	}
	for i := Seq(1); ; i++ {
		mustAppend(t, j, RecWrite, payloadFor(i, 100))
		segs := segFiles(t, dir)
		if len(segs) >= 4 {
			first, _ := parseSegName(segs[len(segs)-1])
			if i-first >= 3 {
				break
			}
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	for _, name := range segFiles(t, src) {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func updateGolden(t *testing.T) {
	if err := os.RemoveAll(goldenDir); err != nil {
		t.Fatal(err)
	}
	valid := filepath.Join(goldenDir, "valid")
	if err := os.MkdirAll(valid, 0o755); err != nil {
		t.Fatal(err)
	}
	writeValidGolden(t, valid)
	for _, tc := range goldenCases[1:] {
		dir := filepath.Join(goldenDir, tc.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		copyDir(t, valid, dir)
		tc.mutate(t, dir, segFiles(t, dir))
	}
}

func TestJournal_RecoverGolden(t *testing.T) {
	if *update {
		updateGolden(t)
	}
	var base goldenBase
	validSegs := segFiles(t, filepath.Join(goldenDir, "valid"))
	if len(validSegs) == 0 {
		t.Fatalf("no golden files in %s: run go test -run TestJournal_RecoverGolden -update", goldenDir)
	}
	for _, s := range validSegs {
		first, _ := parseSegName(s)
		base.firsts = append(base.firsts, first)
	}
	_, offs, _ := segFrames(t, filepath.Join(goldenDir, "valid", validSegs[len(validSegs)-1]))
	base.last = base.firsts[len(base.firsts)-1] + Seq(len(offs)) - 1

	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(goldenDir, tc.name)
			segs := segFiles(t, src)
			i := tc.scanSeg
			if i < 0 {
				i += len(segs)
			}
			data, err := os.ReadFile(filepath.Join(src, segs[i]))
			if err != nil {
				t.Fatal(err)
			}
			if err := ReadSegment(data, nil); !errors.Is(err, tc.wantScan) || (tc.wantScan == nil) != (err == nil) {
				t.Errorf("ReadSegment(%s) = %v, want %v", segs[i], err, tc.wantScan)
			}

			dir := t.TempDir()
			copyDir(t, src, dir)
			j, err := Open(dir, Options{SegmentSize: goldenSegSize, Logger: logtest.Logger(t)})
			if tc.wantOpen != nil {
				if !errors.Is(err, tc.wantOpen) {
					t.Fatalf("Open = %v, want %v", err, tc.wantOpen)
				}
				if !strings.Contains(err.Error(), ".seg") {
					t.Errorf("Open error %q does not name the segment", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer j.Close()
			ri := j.Recovery()
			want := tc.wantLast(base)
			if ri.LastSeq != want || j.LastSeq() != want {
				t.Fatalf("LastSeq = %d (recovery %+v), want %d", j.LastSeq(), ri, want)
			}
			if tc.wantCut != (ri.TornBytes > 0) || tc.wantCut != (ri.BrokenFile != "") {
				t.Fatalf("recovery %+v, want cut %v", ri, tc.wantCut)
			}
			if tc.wantCut {
				st, err := os.Stat(ri.BrokenFile)
				if err != nil || st.Size() == 0 {
					t.Fatalf("broken file: %v", err)
				}
				if filepath.Dir(ri.BrokenFile) != filepath.Join(dir, brokenDir) {
					t.Errorf("broken file %s not under broken/", ri.BrokenFile)
				}
			}
			checkRecords(t, readAll(t, j, 1, want), 1, want, 100)
			// The repaired journal takes appends and reopens cleanly.
			s := mustAppend(t, j, RecWrite, payloadFor(want+1, 100))
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j2, err := Open(dir, Options{SegmentSize: goldenSegSize, Logger: logtest.Logger(t)})
			if err != nil {
				t.Fatalf("reopen after repair: %v", err)
			}
			defer j2.Close()
			if ri := j2.Recovery(); ri.LastSeq != s || ri.TornBytes != 0 {
				t.Fatalf("reopen after repair: %+v, want LastSeq %d and nothing cut", ri, s)
			}
			checkRecords(t, readAll(t, j2, 1, s), 1, s, 100)
		})
	}
}
