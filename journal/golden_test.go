package journal

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// opGoldenDir holds one file per record type, named after the type, holding
// the payload of goldenOps' op of that type.
const opGoldenDir = "testdata/ops"

// goldenOps has one op of every record type. Every field is set, and to a
// value no other field of the op has, so a swapped field order shows.
var goldenOps = []Op{
	OpWrite{Path: "vm/disk.raw", Ino: 4242, Off: 1<<40 + 512, Data: []byte("guest data")},
	OpTruncate{Path: "vm/disk.raw", Ino: 4242, Size: 10 << 30},
	OpFallocate{Path: "vm/disk.raw", Ino: 4242, Mode: 3, Off: 4096, Len: 1 << 20},
	OpCreate{Path: "vm/new.img", Mode: 0o100640, Uid: 1001, Gid: 1002, Ino: 4243},
	OpMkdir{Path: "vm/snap", Mode: 0o40750, Uid: 1001, Gid: 1002, Ino: 4244},
	OpMknod{Path: "vm/fifo", Mode: 0o10600, Uid: 1001, Gid: 1002, Rdev: 0x0801, Ino: 4245},
	OpSymlink{Path: "vm/current", Target: "snap/disk-1.raw", Uid: 1001, Gid: 1002, Ino: 4246},
	OpLink{OldPath: "vm/new.img", NewPath: "vm/snap/new.img", Ino: 4243},
	OpUnlink{Path: "vm/new.img", Ino: 4243},
	OpRmdir{Path: "vm/old", Ino: 4247},
	OpRename{OldPath: "vm/disk.tmp", NewPath: "vm/disk.raw", Flags: 1, Ino: 4242},
	OpSetattr{Path: "vm/disk.raw", Valid: SetMode | SetUid | SetGid | SetAtime | SetMtime, Mode: 0o600, Uid: 1001, Gid: 1002,
		Atime: -1, Mtime: 1700000000123456789, Ino: 4242},
	OpSetxattr{Path: "vm/disk.raw", Name: "user.drfs.tag", Value: []byte{0, 1, 2, 0xff}, Flags: 2, Ino: 4242},
	OpRemovexattr{Path: ".", Name: "user.drfs.tag", Ino: 1},
	OpHot{Ino: 4242, Region: 12345},
}

func opGoldenFile(t RecordType) string { return filepath.Join(opGoldenDir, t.String()+".bin") }

func TestOp_Golden(t *testing.T) {
	if len(goldenOps) != int(recTypeEnd)-1 {
		t.Fatalf("%d golden ops for %d record types", len(goldenOps), recTypeEnd-1)
	}
	if *update {
		if err := os.MkdirAll(opGoldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, op := range goldenOps {
			if err := os.WriteFile(opGoldenFile(op.Type()), EncodeOp(op), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, op := range goldenOps {
		typ := RecordType(i + 1)
		t.Run(typ.String(), func(t *testing.T) {
			if op.Type() != typ {
				t.Fatalf("goldenOps[%d] is %s, want %s", i, op.Type(), typ)
			}
			want, err := os.ReadFile(opGoldenFile(typ))
			if err != nil {
				t.Fatalf("%v (run go test -run TestOp_Golden -update)", err)
			}
			if got := EncodeOp(op); !bytes.Equal(got, want) {
				t.Errorf("EncodeOp(%#v)\n got % x\nwant % x", op, got, want)
			}
			got, err := DecodeOp(typ, want)
			if err != nil {
				t.Fatalf("DecodeOp(golden): %v", err)
			}
			if !reflect.DeepEqual(got, op) {
				t.Errorf("DecodeOp(golden) = %#v, want %#v", got, op)
			}
		})
	}
}

// TestOp_FormatConstants pins the values written to disk: a renumbered
// constant would make every existing journal and change log decode wrong.
func TestOp_FormatConstants(t *testing.T) {
	types := []struct {
		typ  RecordType
		val  uint8
		name string
	}{
		{RecWrite, 1, "write"},
		{RecTruncate, 2, "truncate"},
		{RecFallocate, 3, "fallocate"},
		{RecCreate, 4, "create"},
		{RecMkdir, 5, "mkdir"},
		{RecMknod, 6, "mknod"},
		{RecSymlink, 7, "symlink"},
		{RecLink, 8, "link"},
		{RecUnlink, 9, "unlink"},
		{RecRmdir, 10, "rmdir"},
		{RecRename, 11, "rename"},
		{RecSetattr, 12, "setattr"},
		{RecSetxattr, 13, "setxattr"},
		{RecRemovexattr, 14, "removexattr"},
		{RecHot, 15, "hot"},
	}
	if len(types) != int(recTypeEnd)-1 {
		t.Errorf("%d record types pinned, %d defined", len(types), recTypeEnd-1)
	}
	for _, tt := range types {
		if uint8(tt.typ) != tt.val || tt.typ.String() != tt.name {
			t.Errorf("%s = %d, want %s = %d", tt.typ, uint8(tt.typ), tt.name, tt.val)
		}
	}
	bits := []struct {
		name     string
		bit, val uint32
	}{
		{"SetMode", SetMode, 0x01},
		{"SetUid", SetUid, 0x02},
		{"SetGid", SetGid, 0x04},
		{"SetAtime", SetAtime, 0x08},
		{"SetMtime", SetMtime, 0x10},
	}
	var all uint32
	for _, b := range bits {
		if b.bit != b.val {
			t.Errorf("%s = %#x, want %#x", b.name, b.bit, b.val)
		}
		all |= b.bit
	}
	if all != setValidMask {
		t.Errorf("setValidMask = %#x, want %#x", setValidMask, all)
	}
}

// TestOp_Describe checks what every op says it touches against the op's fields.
func TestOp_Describe(t *testing.T) {
	type want struct {
		class        string // data, namespace, attr, hot
		creates      bool
		paths        []string
		changed, obj string
		dirs         []string
	}
	wants := map[RecordType]want{
		RecWrite:       {"data", false, []string{"vm/disk.raw"}, "vm/disk.raw", "vm/disk.raw", nil},
		RecTruncate:    {"data", false, []string{"vm/disk.raw"}, "vm/disk.raw", "vm/disk.raw", nil},
		RecFallocate:   {"data", false, []string{"vm/disk.raw"}, "vm/disk.raw", "vm/disk.raw", nil},
		RecCreate:      {"namespace", true, []string{"vm/new.img"}, "vm/new.img", "vm/new.img", []string{"vm"}},
		RecMkdir:       {"namespace", true, []string{"vm/snap"}, "vm/snap", "vm/snap", []string{"vm"}},
		RecMknod:       {"namespace", true, []string{"vm/fifo"}, "vm/fifo", "vm/fifo", []string{"vm"}},
		RecSymlink:     {"namespace", true, []string{"vm/current"}, "vm/current", "vm/current", []string{"vm"}},
		RecLink:        {"namespace", false, []string{"vm/new.img", "vm/snap/new.img"}, "vm/snap/new.img", "vm/snap/new.img", []string{"vm/snap"}},
		RecUnlink:      {"namespace", false, []string{"vm/new.img"}, "vm/new.img", "", []string{"vm"}},
		RecRmdir:       {"namespace", false, []string{"vm/old"}, "vm/old", "", []string{"vm"}},
		RecRename:      {"namespace", false, []string{"vm/disk.tmp", "vm/disk.raw"}, "vm/disk.raw", "", []string{"vm"}},
		RecSetattr:     {"attr", false, []string{"vm/disk.raw"}, "vm/disk.raw", "vm/disk.raw", nil},
		RecSetxattr:    {"attr", false, []string{"vm/disk.raw"}, "vm/disk.raw", "vm/disk.raw", nil},
		RecRemovexattr: {"attr", false, []string{"."}, ".", ".", nil},
		RecHot:         {"hot", false, nil, "", "", nil},
	}
	inos := map[RecordType]uint64{RecCreate: 4243, RecMkdir: 4244, RecMknod: 4245, RecSymlink: 4246,
		RecLink: 4243, RecUnlink: 4243, RecRmdir: 4247, RecRemovexattr: 1}
	for _, op := range goldenOps {
		typ := op.Type()
		w := wants[typ]
		class := "hot"
		switch {
		case typ.IsData():
			class = "data"
		case typ.IsNamespace():
			class = "namespace"
		case typ.IsAttr():
			class = "attr"
		}
		if n := btoi(typ.IsData()) + btoi(typ.IsNamespace()) + btoi(typ.IsAttr()); n > 1 {
			t.Errorf("%s is in %d classes", typ, n)
		}
		ino, ok := inos[typ]
		if !ok {
			ino = 4242
		}
		if class != w.class || typ.Creates() != w.creates || op.Inode() != ino ||
			!reflect.DeepEqual(op.Paths(), w.paths) || op.Changed() != w.changed || op.Object() != w.obj ||
			!reflect.DeepEqual(op.Dirs(), w.dirs) {
			t.Errorf("%s: class %s creates %v inode %d paths %q changed %q object %q dirs %q; want %+v, inode %d",
				typ, class, typ.Creates(), op.Inode(), op.Paths(), op.Changed(), op.Object(), op.Dirs(), w, ino)
		}
	}
	if d := (OpRename{OldPath: "a/x", NewPath: "b/y"}).Dirs(); !reflect.DeepEqual(d, []string{"a", "b"}) {
		t.Errorf("rename across directories: Dirs = %q", d)
	}
	if d := (OpCreate{Path: "top"}).Dirs(); !reflect.DeepEqual(d, []string{"."}) {
		t.Errorf("create at the root: Dirs = %q", d)
	}
	if p := OpPath(OpHot{}); p != "." {
		t.Errorf("OpPath(OpHot) = %q", p)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
