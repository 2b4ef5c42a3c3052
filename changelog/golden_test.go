package changelog

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"drfs/journal"
)

var update = flag.Bool("update", false, "rewrite golden files and the fuzz seed corpus")

// goldenDir holds one directory per case: log.dcl and want.txt, which is
// the dump of the decoded log or "error: <sentinel>".
const goldenDir = "../testdata/changelog"

var sentinels = map[string]error{
	"ErrChecksum": ErrChecksum, "ErrTruncated": ErrTruncated, "ErrVersion": ErrVersion,
	"ErrTooLarge": ErrTooLarge, "ErrBadLog": ErrBadLog,
}

// goldenLog is the small valid log of the golden files.
func goldenLog() *Log {
	h := testHeader()
	return &Log{Header: h, Ops: []journal.Op{
		journal.OpCreate{Path: "vm1/disk.raw", Mode: 0o600, Ino: 11},
		journal.OpWrite{Path: "vm1/disk.raw", Ino: 11, Off: 4096, Data: []byte("guest data")},
		journal.OpRename{OldPath: "vm1/disk.raw", NewPath: "vm1/disk.img", Ino: 11},
	}}
}

type goldenCase struct {
	name string
	data []byte
	want string // "" for a valid log
}

func goldenCases(tb testing.TB) []goldenCase {
	good := MustMarshal(tb, goldenLog())
	hl := headerLen(goldenLog().VolumeID)
	resync := goldenLog()
	resync.Kind, resync.FromSeq = KindResync, 0
	v2 := newRawLog(nil, 0)
	v2.version = 2
	flipped := bytes.Clone(good)
	flipped[hl+5] ^= 0x01
	bomb := newRawLog(nil, 1)
	bomb.body, bomb.rawLen = zstdCompress(tb, make([]byte, 16<<20), false), 4096
	return []goldenCase{
		{"valid", good, ""},
		{"valid-resync", MustMarshal(tb, resync), ""},
		{"truncated-body", good[:hl+3], "ErrTruncated"},
		{"truncated-trailer", good[:len(good)-4], "ErrTruncated"},
		{"flipped-body", flipped, "ErrChecksum"},
		{"bad-version", v2.bytes(tb), "ErrVersion"},
		{"path-dotdot", newRawLog(record(journal.RecWrite, journal.EncodeOp(journal.OpWrite{Path: "../x", Data: []byte("x")})), 1).bytes(tb), "ErrBadLog"},
		{"path-absolute", newRawLog(record(journal.RecUnlink, journal.EncodeOp(journal.OpUnlink{Path: "/etc/passwd"})), 1).bytes(tb), "ErrBadLog"},
		{"bomb", bomb.bytes(tb), "ErrTooLarge"},
	}
}

func TestChangelog_Golden(t *testing.T) {
	for _, gc := range goldenCases(t) {
		t.Run(gc.name, func(t *testing.T) {
			dir := filepath.Join(goldenDir, gc.name)
			want := "error: " + gc.want + "\n"
			if gc.want == "" {
				l, err := Unmarshal(gc.data, Limits{})
				if err != nil {
					t.Fatal(err)
				}
				want = dump(l)
			}
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "log.dcl"), gc.data, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "want.txt"), []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(filepath.Join(dir, "log.dcl"))
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			wantFile, err := os.ReadFile(filepath.Join(dir, "want.txt"))
			if err != nil {
				t.Fatal(err)
			}
			l, err := ReadFile(filepath.Join(dir, "log.dcl"), Limits{})
			got := ""
			if err != nil {
				got = "error: unknown\n"
				for name, s := range sentinels {
					if errors.Is(err, s) {
						got = "error: " + name + "\n"
					}
				}
				if l != nil {
					t.Error("Log returned with an error")
				}
			} else {
				got = dump(l)
			}
			if got != string(wantFile) {
				t.Errorf("decoding %s:\n got %s (%v)\nwant %s", dir, got, err, wantFile)
			}
			// The stored log was written by an older build: the header
			// layout must not drift. The compressed length and CRCs may,
			// with the zstd release.
			if gc.want == "" {
				n := headerLen(goldenLog().VolumeID) - 8 - crcSize
				if !bytes.Equal(data[:n], gc.data[:n]) {
					t.Errorf("header encoding changed:\n got %x\nwant %x", gc.data[:n], data[:n])
				}
			}
		})
	}
}

// fuzzSeeds are the seed inputs of FuzzDecode: valid logs of each kind,
// truncated and corrupt ones.
func fuzzSeeds(tb testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	for _, gc := range goldenCases(tb) {
		if gc.name != "bomb" {
			seeds["golden-"+gc.name] = gc.data
		}
	}
	all := MustMarshal(tb, testLog())
	seeds["all-ops"] = all
	resync := testLog()
	resync.Kind, resync.FromSeq = KindResync, 0
	seeds["all-ops-resync"] = MustMarshal(tb, resync)
	seeds["empty"] = MustMarshal(tb, &Log{Header: testHeader()})
	hl := headerLen(testHeader().VolumeID)
	for name, n := range map[string]int{"empty": 0, "magic": 8, "prefix": 13, "header": hl - 1,
		"no-body": hl, "body": (hl + len(all)) / 2, "trailer": len(all) - 1} {
		seeds["truncated-"+name] = all[:n]
	}
	seeds["hot"] = newRawLog(record(journal.RecHot, journal.EncodeOp(journal.OpHot{Ino: 1})), 1).bytes(tb)
	return seeds
}

// TestChangelog_FuzzCorpus keeps testdata/fuzz/FuzzDecode in step with
// fuzzSeeds under -update, and checks the stored seeds decode without
// panicking (go test runs them through FuzzDecode too).
func TestChangelog_FuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range fuzzSeeds(t) {
			content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) < len(fuzzSeeds(t)) {
		t.Fatalf("seed corpus: %d files, %v (run with -update)", len(ents), err)
	}
}
