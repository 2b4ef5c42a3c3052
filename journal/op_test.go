package journal

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var sampleOps = []Op{
	OpWrite{Path: "images/vm1.qcow2", Off: 1 << 40, Data: []byte("hello")},
	OpWrite{Path: "a", Off: 0, Data: []byte{}},
	OpTruncate{Path: "disk.raw", Size: 10 << 30},
	OpFallocate{Path: "disk.raw", Mode: 3, Off: 4096, Len: 1 << 20},
	OpCreate{Path: "d/f", Mode: 0o100644, Uid: 1000, Gid: 1000, Ino: 42},
	OpMkdir{Path: "d", Mode: 0o40755, Uid: 0, Gid: 0, Ino: 7},
	OpMknod{Path: "d/fifo", Mode: 0o10644, Rdev: 0x0801, Ino: 9},
	OpSymlink{Path: "d/l", Target: "../../etc/passwd", Uid: 1, Gid: 2, Ino: 10},
	OpLink{OldPath: "d/f", NewPath: "d/g", Ino: 42},
	OpUnlink{Path: "d/g", Ino: 42},
	OpRmdir{Path: "d", Ino: 7},
	OpRename{OldPath: "a.tmp", NewPath: "a", Flags: 1, Ino: 3},
	OpSetattr{Path: ".", Valid: SetMode | SetMtime, Mode: 0o755, Atime: -1, Mtime: 1700000000123456789},
	OpSetxattr{Path: "disk.raw", Name: "user.drfs", Value: []byte{0, 1, 2}, Flags: 1},
	OpSetxattr{Path: ".", Name: "user.empty", Value: []byte{}},
	OpRemovexattr{Path: ".", Name: "user.drfs"},
	OpHot{Ino: 1 << 63, Region: 12345},
}

func TestOp_RoundTrip(t *testing.T) {
	for _, op := range sampleOps {
		b := EncodeOp(op)
		got, err := DecodeOp(op.Type(), b)
		if err != nil {
			t.Fatalf("DecodeOp(%#v): %v", op, err)
		}
		if !reflect.DeepEqual(got, op) {
			t.Fatalf("round trip: got %#v, want %#v", got, op)
		}
		if len(b) > 0 {
			if _, err := DecodeOp(op.Type(), b[:len(b)-1]); err == nil && op.Type() != RecWrite {
				t.Errorf("%T: truncated payload accepted", op)
			}
		}
		if _, err := DecodeOp(op.Type(), append(bytes.Clone(b), 0)); err == nil && op.Type() != RecWrite {
			t.Errorf("%T: trailing byte accepted", op)
		}
	}
}

func TestOp_AppendWriteHeader(t *testing.T) {
	op := OpWrite{Path: "x/y", Off: 8192, Data: bytes.Repeat([]byte{7}, 100)}
	got := append(AppendWriteHeader(nil, op.Path, op.Ino, op.Off), op.Data...)
	if !bytes.Equal(got, EncodeOp(op)) {
		t.Fatal("AppendWriteHeader+data != EncodeOp")
	}
}

func TestOp_DecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		typ  RecordType
		b    []byte
	}{
		{"unknown type", 200, nil},
		{"type zero", 0, nil},
		{"empty", RecTruncate, nil},
		{"absolute path", RecUnlink, EncodeOp(OpUnlink{Path: "/etc/passwd"})},
		{"dotdot", RecUnlink, EncodeOp(OpUnlink{Path: "../x"})},
		{"dotdot alone", RecUnlink, EncodeOp(OpUnlink{Path: ".."})},
		{"unclean", RecUnlink, EncodeOp(OpUnlink{Path: "a//b"})},
		{"trailing slash", RecUnlink, EncodeOp(OpUnlink{Path: "a/"})},
		{"nul", RecUnlink, EncodeOp(OpUnlink{Path: "a\x00b"})},
		{"root for unlink", RecUnlink, EncodeOp(OpUnlink{Path: "."})},
		{"empty path", RecUnlink, EncodeOp(OpUnlink{Path: ""})},
		{"long path", RecUnlink, EncodeOp(OpUnlink{Path: strings.Repeat("a", MaxPathLen+1)})},
		{"negative offset", RecWrite, EncodeOp(OpWrite{Path: "a", Off: -1})},
		{"negative size", RecTruncate, EncodeOp(OpTruncate{Path: "a", Size: -5})},
		{"length past end", RecUnlink, []byte{50, 'a'}},
		{"overlong varint", RecHot, []byte{0x80, 0x00, 0x01}},
		{"uint32 overflow", RecRename, append(EncodeOp(OpRename{OldPath: "a", NewPath: "b"})[:4], 0x80, 0x80, 0x80, 0x80, 0x10, 0)},
		{"bad setattr bits", RecSetattr, EncodeOp(OpSetattr{Path: "a", Valid: 1 << 10})},
		{"empty xattr name", RecRemovexattr, EncodeOp(OpRemovexattr{Path: "a"})},
		{"empty symlink target", RecSymlink, EncodeOp(OpSymlink{Path: "a"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, err := DecodeOp(tt.typ, tt.b)
			if err == nil {
				t.Fatalf("DecodeOp accepted %#v", op)
			}
			if !errors.Is(err, ErrBadOp) && !errors.Is(err, ErrBadRecordType) {
				t.Fatalf("error %v wraps neither ErrBadOp nor ErrBadRecordType", err)
			}
		})
	}
}

func TestOp_ValidPath(t *testing.T) {
	for _, p := range []string{"a", "a/b", "dir/disk.qcow2", ".hidden", "a/..b", "...", strings.Repeat("x", MaxPathLen)} {
		if err := ValidPath(p); err != nil {
			t.Errorf("ValidPath(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"", ".", "..", "/a", "a/", "./a", "a/./b", "a/../b", "../a", "a\x00"} {
		if ValidPath(p) == nil {
			t.Errorf("ValidPath(%q) accepted", p)
		}
	}
}

func TestOp_JournalRoundTrip(t *testing.T) {
	j := MustOpenJournal(t, "", Options{})
	for _, op := range sampleOps {
		mustAppend(t, j, op.Type(), EncodeOp(op))
	}
	i := 0
	err := j.Read(1, j.LastSeq(), func(r Record) error {
		op, err := DecodeOp(r.Type, r.Payload)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(op, sampleOps[i]) {
			t.Errorf("record %d: %#v, want %#v", r.Seq, op, sampleOps[i])
		}
		i++
		return nil
	})
	if err != nil || i != len(sampleOps) {
		t.Fatalf("Read: %v after %d ops", err, i)
	}
}
