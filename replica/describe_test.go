package replica

import (
	"testing"

	"drfs/journal"
)

func TestDescribe(t *testing.T) {
	tests := []struct {
		op   journal.Op
		want string
	}{
		{journal.OpWrite{Path: "d/disk.raw", Off: 4096, Data: make([]byte, 512)}, "write d/disk.raw @4096+512"},
		{journal.OpTruncate{Path: "d/disk.raw", Size: 10}, "truncate d/disk.raw"},
		{journal.OpFallocate{Path: "d/disk.raw", Off: 1, Len: 2}, "fallocate d/disk.raw"},
		{journal.OpCreate{Path: "d/new"}, "create d/new"},
		{journal.OpMkdir{Path: "d"}, "mkdir d"},
		{journal.OpMknod{Path: "d/fifo"}, "mknod d/fifo"},
		{journal.OpSymlink{Path: "d/sym", Target: "x"}, "symlink d/sym"},
		{journal.OpLink{OldPath: "d/a", NewPath: "d/b"}, "link d/a -> d/b"},
		{journal.OpUnlink{Path: "d/a"}, "unlink d/a"},
		{journal.OpRmdir{Path: "d"}, "rmdir d"},
		{journal.OpRename{OldPath: "d/a", NewPath: "e/a"}, "rename d/a -> e/a"},
		{journal.OpSetattr{Path: "."}, "setattr ."},
		{journal.OpSetxattr{Path: "d/a", Name: "user.x"}, "setxattr d/a"},
		{journal.OpRemovexattr{Path: "d/a", Name: "user.x"}, "removexattr d/a"},
		{journal.OpHot{Ino: 3, Region: 1}, "hot ."},
	}
	for _, tt := range tests {
		if got := describe(tt.op); got != tt.want {
			t.Errorf("describe(%#v) = %q, want %q", tt.op, got, tt.want)
		}
	}
}
