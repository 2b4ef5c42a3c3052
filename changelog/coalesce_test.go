package changelog

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"

	"drfs/journal"
)

func fillRandom(b []byte, seed uint64) {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
}

func w(path string, off int64, data string) journal.OpWrite {
	return journal.OpWrite{Path: path, Off: off, Data: []byte(data)}
}

func TestCoalesce(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, MaxMergedWrite+10)
	for _, tc := range []struct {
		name string
		in   []journal.Op
		want []journal.Op
	}{
		{"empty", nil, []journal.Op{}},
		{"single", []journal.Op{w("a", 5, "abc")}, []journal.Op{w("a", 5, "abc")}},
		{"overlap later wins", []journal.Op{w("a", 0, "aaaa"), w("a", 2, "bbbb")}, []journal.Op{w("a", 0, "aabbbb")}},
		{"overlap earlier inside", []journal.Op{w("a", 2, "bb"), w("a", 0, "aaaaaa")}, []journal.Op{w("a", 0, "aaaaaa")}},
		{"overlap later inside", []journal.Op{w("a", 0, "aaaaaa"), w("a", 2, "bb")}, []journal.Op{w("a", 0, "aabbaa")}},
		{"same range thrice", []journal.Op{w("a", 1, "xx"), w("a", 1, "yy"), w("a", 1, "zz")}, []journal.Op{w("a", 1, "zz")}},
		{"adjacent merge", []journal.Op{w("a", 4, "efgh"), w("a", 0, "abcd"), w("a", 8, "ij")}, []journal.Op{w("a", 0, "abcdefghij")}},
		{"gap kept", []journal.Op{w("a", 0, "ab"), w("a", 5, "cd")}, []journal.Op{w("a", 0, "ab"), w("a", 5, "cd")}},
		{"zero length dropped", []journal.Op{w("a", 0, ""), w("a", 3, "x")}, []journal.Op{w("a", 3, "x")}},
		{"paths by first appearance", []journal.Op{w("b", 4, "2"), w("a", 0, "1"), w("b", 0, "0"), w("a", 9, "3")},
			[]journal.Op{w("b", 0, "0"), w("b", 4, "2"), w("a", 0, "1"), w("a", 9, "3")}},
		{"truncate barrier", []journal.Op{w("a", 0, "aaaa"), journal.OpTruncate{Path: "a", Size: 1}, w("a", 2, "bb")},
			[]journal.Op{w("a", 0, "aaaa"), journal.OpTruncate{Path: "a", Size: 1}, w("a", 2, "bb")}},
		{"rename barrier", []journal.Op{w("a", 0, "1"), w("b", 0, "2"), journal.OpRename{OldPath: "a", NewPath: "b"}, w("b", 1, "3"), w("a", 0, "4")},
			[]journal.Op{w("a", 0, "1"), w("b", 0, "2"), journal.OpRename{OldPath: "a", NewPath: "b"}, w("b", 1, "3"), w("a", 0, "4")}},
		{"barriers keep order", []journal.Op{
			journal.OpCreate{Path: "a"}, w("a", 0, "x"), w("a", 1, "y"), journal.OpSetattr{Path: "a", Valid: journal.SetMode},
			journal.OpFallocate{Path: "a", Len: 9}, journal.OpLink{OldPath: "a", NewPath: "c"}, w("c", 0, "z"), journal.OpUnlink{Path: "a"}},
			[]journal.Op{
				journal.OpCreate{Path: "a"}, w("a", 0, "xy"), journal.OpSetattr{Path: "a", Valid: journal.SetMode},
				journal.OpFallocate{Path: "a", Len: 9}, journal.OpLink{OldPath: "a", NewPath: "c"}, w("c", 0, "z"), journal.OpUnlink{Path: "a"}}},
		{"hot dropped and transparent", []journal.Op{journal.OpHot{Ino: 1}, w("a", 0, "ab"), journal.OpHot{Ino: 2}, w("a", 2, "cd"), journal.OpHot{}},
			[]journal.Op{w("a", 0, "abcd")}},
		{"hard links merge by inode", []journal.Op{
			journal.OpWrite{Path: "a", Ino: 7, Data: []byte("1111")}, journal.OpWrite{Path: "b", Ino: 8, Data: []byte("2")},
			journal.OpWrite{Path: "c", Ino: 7, Off: 1, Data: []byte("33")}, journal.OpWrite{Path: "a", Ino: 7, Off: 2, Data: []byte("4")}},
			[]journal.Op{journal.OpWrite{Path: "a", Ino: 7, Data: []byte("1341")}, journal.OpWrite{Path: "b", Ino: 8, Data: []byte("2")}}},
		{"inode joins two path groups", []journal.Op{
			journal.OpWrite{Path: "x", Data: []byte("aa")}, journal.OpWrite{Path: "y", Ino: 5, Data: []byte("b")},
			journal.OpWrite{Path: "x", Ino: 5, Off: 1, Data: []byte("c")}, journal.OpWrite{Path: "y", Ino: 5, Off: 0, Data: []byte("d")}},
			[]journal.Op{journal.OpWrite{Path: "x", Ino: 5, Data: []byte("dc")}}},
		{"4 MiB split", []journal.Op{journal.OpWrite{Path: "a", Off: 3, Data: big}},
			[]journal.Op{journal.OpWrite{Path: "a", Off: 3, Data: big[:MaxMergedWrite]}, journal.OpWrite{Path: "a", Off: 3 + MaxMergedWrite, Data: big[MaxMergedWrite:]}}},
		{"4 MiB split of merged", []journal.Op{journal.OpWrite{Path: "a", Off: 10, Data: big[10:]}, journal.OpWrite{Path: "a", Data: big[:10]}},
			[]journal.Op{journal.OpWrite{Path: "a", Data: big[:MaxMergedWrite]}, journal.OpWrite{Path: "a", Off: MaxMergedWrite, Data: big[MaxMergedWrite:]}}},
		{"unmergeable offsets are barriers", []journal.Op{w("a", 0, "x"), w("a", -1, "y"), w("a", 1<<62, "z"), journal.OpWrite{Path: "a", Off: 1<<63 - 1, Data: []byte("zz")}, w("a", 1, "q")},
			[]journal.Op{w("a", 0, "x"), w("a", -1, "y"), w("a", 1<<62, "z"), journal.OpWrite{Path: "a", Off: 1<<63 - 1, Data: []byte("zz")}, w("a", 1, "q")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Coalesce(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Coalesce:\n got %v\nwant %v", short(got), short(tc.want))
			}
		})
	}
}

func short(ops []journal.Op) string {
	var b bytes.Buffer
	for _, op := range ops {
		if w, ok := op.(journal.OpWrite); ok && len(w.Data) > 16 {
			fmt.Fprintf(&b, "{write %s ino=%d off=%d len=%d} ", w.Path, w.Ino, w.Off, len(w.Data))
			continue
		}
		fmt.Fprintf(&b, "%+v ", op)
	}
	return b.String()
}

func TestCoalesce_CopiesData(t *testing.T) {
	buf := []byte("abcdef")
	in := []journal.Op{
		journal.OpWrite{Path: "a", Data: buf[:3]},
		journal.OpSetxattr{Path: "a", Name: "user.x", Value: buf[3:]},
		journal.OpWrite{Path: "a", Data: buf},
	}
	out := Coalesce(in)
	for i := range buf {
		buf[i] = 0
	}
	want := []journal.Op{
		journal.OpWrite{Path: "a", Data: []byte("abc")},
		journal.OpSetxattr{Path: "a", Name: "user.x", Value: []byte("def")},
		journal.OpWrite{Path: "a", Data: []byte("abcdef")},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("output aliases input: %v", out)
	}
}

// model is an in-memory file tree: paths name inodes, inodes hold bytes.
type model struct {
	paths  map[string]int
	inodes map[int][]byte
	next   int
}

func newModel() *model { return &model{paths: map[string]int{}, inodes: map[int][]byte{}, next: 1} }

func (m *model) apply(op journal.Op) {
	switch o := op.(type) {
	case journal.OpCreate:
		if _, ok := m.paths[o.Path]; !ok {
			m.paths[o.Path] = int(o.Ino)
			m.inodes[int(o.Ino)] = []byte{}
		}
	case journal.OpWrite:
		ino, ok := m.paths[o.Path]
		if !ok || len(o.Data) == 0 { // pwrite of 0 bytes changes nothing
			return
		}
		d := m.inodes[ino]
		if end := int(o.Off) + len(o.Data); end > len(d) {
			d = append(d, make([]byte, end-len(d))...)
		}
		copy(d[o.Off:], o.Data)
		m.inodes[ino] = d
	case journal.OpTruncate:
		if ino, ok := m.paths[o.Path]; ok {
			d := m.inodes[ino]
			if int(o.Size) <= len(d) {
				d = d[:o.Size]
			} else {
				d = append(d, make([]byte, int(o.Size)-len(d))...)
			}
			m.inodes[ino] = d
		}
	case journal.OpRename:
		if ino, ok := m.paths[o.OldPath]; ok {
			delete(m.paths, o.OldPath)
			m.paths[o.NewPath] = ino
		}
	case journal.OpLink:
		if ino, ok := m.paths[o.OldPath]; ok {
			if _, exists := m.paths[o.NewPath]; !exists {
				m.paths[o.NewPath] = ino
			}
		}
	case journal.OpUnlink:
		delete(m.paths, o.Path)
	case journal.OpHot:
	default:
		panic(fmt.Sprintf("model: %T", op))
	}
}

// state renders path -> contents, so models with different inode numbering
// compare equal.
func (m *model) state() map[string]string {
	s := make(map[string]string, len(m.paths))
	for p, ino := range m.paths {
		s[p] = string(m.inodes[ino])
	}
	return s
}

// randomOps generates ops over a few paths, mostly small overlapping writes,
// with writes carrying the inode the generator's own model gives the path.
func randomOps(r *rand.Rand, n int) []journal.Op {
	paths := []string{"a", "b", "c", "d/e"}
	gen := newModel()
	ops := make([]journal.Op, 0, n)
	nextIno := uint64(100)
	for len(ops) < n {
		p := paths[r.IntN(len(paths))]
		ino, exists := gen.paths[p]
		var op journal.Op
		switch k := r.IntN(100); {
		case k < 65:
			if !exists {
				continue
			}
			data := make([]byte, r.IntN(40))
			for i := range data {
				data[i] = byte('A' + r.IntN(26))
			}
			o := journal.OpWrite{Path: p, Ino: uint64(ino), Off: int64(r.IntN(120)), Data: data}
			if r.IntN(8) == 0 && !linked(gen, p) {
				o.Ino = 0 // writes that don't know their inode
			}
			op = o
		case k < 72:
			nextIno++
			op = journal.OpCreate{Path: p, Ino: nextIno}
		case k < 77:
			op = journal.OpTruncate{Path: p, Size: int64(r.IntN(150))}
		case k < 82:
			op = journal.OpRename{OldPath: p, NewPath: paths[r.IntN(len(paths))]}
		case k < 86:
			op = journal.OpLink{OldPath: p, NewPath: paths[r.IntN(len(paths))]}
		case k < 90:
			op = journal.OpUnlink{Path: p}
		default:
			op = journal.OpHot{Ino: uint64(ino), Region: uint64(r.IntN(4))}
		}
		if rn, ok := op.(journal.OpRename); ok && rn.OldPath == rn.NewPath {
			continue
		}
		gen.apply(op)
		ops = append(ops, op)
	}
	return ops
}

func linked(m *model, p string) bool {
	ino, ok := m.paths[p]
	if !ok {
		return false
	}
	for q, i := range m.paths {
		if q != p && i == ino {
			return true
		}
	}
	return false
}

func TestCoalesce_Property(t *testing.T) {
	for seed := range uint64(3000) {
		r := rand.New(rand.NewPCG(seed, 42))
		ops := randomOps(r, 1+r.IntN(60))
		orig := cloneOps(ops)
		co := Coalesce(ops)
		if !reflect.DeepEqual(ops, orig) {
			t.Fatalf("seed %d: Coalesce modified its input", seed)
		}
		a, b := newModel(), newModel()
		for _, op := range ops {
			a.apply(op)
		}
		for _, op := range co {
			b.apply(op)
		}
		if !reflect.DeepEqual(a.state(), b.state()) {
			t.Fatalf("seed %d: results differ\nops: %v\ncoalesced: %v\nwant %q\n got %q", seed, short(ops), short(co), a.state(), b.state())
		}
		checkCoalesced(t, seed, ops, co)
	}
}

// checkCoalesced checks the shape of Coalesce's output: no hot ops, barriers
// in order, and within each run of writes no overlap or adjacency per file
// and offsets ascending per path.
func checkCoalesced(t *testing.T, seed uint64, in, out []journal.Op) {
	t.Helper()
	var inBarriers, outBarriers []journal.Op
	for _, op := range in {
		if _, ok := op.(journal.OpWrite); !ok && op.Type() != journal.RecHot {
			inBarriers = append(inBarriers, op)
		}
	}
	var run []journal.OpWrite
	check := func() {
		byPath := map[string][]journal.OpWrite{}
		for _, w := range run {
			byPath[w.Path] = append(byPath[w.Path], w)
		}
		for p, ws := range byPath {
			if !sort.SliceIsSorted(ws, func(i, j int) bool { return ws[i].Off < ws[j].Off }) {
				t.Fatalf("seed %d: writes to %s not in offset order", seed, p)
			}
			for i := 1; i < len(ws); i++ {
				if ws[i-1].Off+int64(len(ws[i-1].Data)) >= ws[i].Off && len(ws[i-1].Data) < MaxMergedWrite {
					t.Fatalf("seed %d: writes to %s overlap or touch: %v", seed, p, short([]journal.Op{ws[i-1], ws[i]}))
				}
			}
		}
		run = run[:0]
	}
	for _, op := range out {
		switch o := op.(type) {
		case journal.OpHot:
			t.Fatalf("seed %d: hot op in output", seed)
		case journal.OpWrite:
			if len(o.Data) == 0 || len(o.Data) > MaxMergedWrite {
				t.Fatalf("seed %d: write of %d bytes", seed, len(o.Data))
			}
			run = append(run, o)
		default:
			check()
			outBarriers = append(outBarriers, op)
		}
	}
	check()
	if !reflect.DeepEqual(inBarriers, outBarriers) {
		t.Fatalf("seed %d: barriers changed", seed)
	}
}

func cloneOps(ops []journal.Op) []journal.Op {
	out := slices.Clone(ops)
	for i, op := range out {
		if w, ok := op.(journal.OpWrite); ok {
			w.Data = slices.Clone(w.Data)
			out[i] = w
		}
	}
	return out
}

// TestCoalesce_Large checks the sweep against the model on many random
// overlapping writes to one large file, and the 4 MiB cap on long extents.
func TestCoalesce_Large(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ops := []journal.Op{journal.OpCreate{Path: "img", Ino: 1}}
	for range 20000 {
		data := make([]byte, 512*(1+r.IntN(16)))
		fillRandom(data, r.Uint64())
		ops = append(ops, journal.OpWrite{Path: "img", Ino: 1, Off: int64(512 * r.IntN(40000)), Data: data})
	}
	co := Coalesce(ops)
	a, b := newModel(), newModel()
	for _, op := range ops {
		a.apply(op)
	}
	for _, op := range co {
		b.apply(op)
	}
	if !reflect.DeepEqual(a.state(), b.state()) {
		t.Fatal("results differ")
	}
	checkCoalesced(t, 0, ops, co)
	t.Logf("%d writes -> %d", len(ops)-1, len(co)-1)
}
