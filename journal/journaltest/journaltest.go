// Package journaltest holds test fixtures shared by the packages that encode, ship and print
// journal ops.
package journaltest

import "drfs/journal"

// Ops returns one op of every type a change log can carry (all but OpHot), with edge values:
// an offset past 1 TiB, empty data, negative times, the volume root as a path.
func Ops() []journal.Op {
	return []journal.Op{
		journal.OpMkdir{Path: "vm1", Mode: 0o755, Uid: 1, Gid: 2, Ino: 10},
		journal.OpCreate{Path: "vm1/disk.raw", Mode: 0o600, Uid: 107, Gid: 107, Ino: 11},
		journal.OpWrite{Path: "vm1/disk.raw", Ino: 11, Off: 1 << 40, Data: []byte("hello, world")},
		journal.OpWrite{Path: "vm1/disk.raw", Ino: 11, Off: 0, Data: nil},
		journal.OpTruncate{Path: "vm1/disk.raw", Ino: 11, Size: 10 << 30},
		journal.OpFallocate{Path: "vm1/disk.raw", Ino: 11, Mode: 3, Off: 4096, Len: 8192},
		journal.OpMknod{Path: "vm1/fifo", Mode: 0o10644, Rdev: 0x0801, Ino: 12},
		journal.OpSymlink{Path: "vm1/link", Target: "../../etc/anything", Uid: 3, Gid: 4, Ino: 13},
		journal.OpLink{OldPath: "vm1/disk.raw", NewPath: "vm1/disk.hard", Ino: 11},
		journal.OpUnlink{Path: "vm1/disk.hard", Ino: 11},
		journal.OpRename{OldPath: "vm1/disk.raw", NewPath: "vm1/disk.img", Flags: 1, Ino: 11},
		journal.OpSetattr{Path: ".", Valid: journal.SetMode | journal.SetMtime, Mode: 0o700, Atime: -5, Mtime: 1_700_000_000_123_456_789},
		journal.OpSetxattr{Path: "vm1/disk.img", Name: "user.drfs", Value: []byte{0, 1, 2}, Flags: 1, Ino: 11},
		journal.OpRemovexattr{Path: ".", Name: "user.x", Ino: 1},
		journal.OpRmdir{Path: "vm1/empty", Ino: 14},
	}
}
