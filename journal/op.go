package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
)

// RecordType identifies the operation a record holds. The values are part of
// the on-disk format.
type RecordType uint8

// Record types. 0 is never valid. The values are written to disk and on the
// wire: never renumber one, only add new ones at the end.
const (
	RecWrite       RecordType = 1
	RecTruncate    RecordType = 2
	RecFallocate   RecordType = 3
	RecCreate      RecordType = 4
	RecMkdir       RecordType = 5
	RecMknod       RecordType = 6
	RecSymlink     RecordType = 7
	RecLink        RecordType = 8
	RecUnlink      RecordType = 9
	RecRmdir       RecordType = 10
	RecRename      RecordType = 11
	RecSetattr     RecordType = 12
	RecSetxattr    RecordType = 13
	RecRemovexattr RecordType = 14
	RecHot         RecordType = 15
	recTypeEnd     RecordType = 16 // one past the last valid type
)

var recTypeNames = [...]string{"", "write", "truncate", "fallocate", "create", "mkdir", "mknod",
	"symlink", "link", "unlink", "rmdir", "rename", "setattr", "setxattr", "removexattr", "hot"}

func (t RecordType) String() string {
	if int(t) < len(recTypeNames) && t != 0 {
		return recTypeNames[t]
	}
	return fmt.Sprintf("RecordType(%d)", uint8(t))
}

// OpSetattr.Valid bits. Part of the on-disk format, like the record types.
const (
	SetMode  uint32 = 1 << 0
	SetUid   uint32 = 1 << 1
	SetGid   uint32 = 1 << 2
	SetAtime uint32 = 1 << 3
	SetMtime uint32 = 1 << 4

	setValidMask = SetMode | SetUid | SetGid | SetAtime | SetMtime
)

// Limits enforced by DecodeOp.
const (
	MaxPathLen      = 4096
	MaxXattrNameLen = 255
	MaxXattrValue   = 64 << 10
)

// Op is a decoded record: one of the 15 Op* types of this package, each a value type.
// Methods that describe what an op touches are defined on every op, so that callers need no
// type switch for them.
type Op interface {
	// Type is the record type the op is stored as.
	Type() RecordType
	// Inode is the inode number, in the source filesystem, of the object the op is about.
	Inode() uint64
	// Paths returns the op's path fields in encoding order: OldPath and NewPath for a
	// link or rename, Path for the others, none for OpHot.
	Paths() []string
	// Changed returns the path the op leaves changed: the new name of a link or rename, Path
	// for the others ("" for OpHot).
	Changed() string
	// Object returns the path of the object whose content or attributes the op sets, or which
	// it creates or links: Path of a data, create, mkdir, mknod, symlink or attribute op,
	// NewPath of a link; "" for unlink, rmdir and rename (they change names only) and OpHot.
	Object() string
	// Dirs returns the directories whose entries the op adds or removes, each once:
	// the parent of Path for create, mkdir, mknod, symlink, unlink and rmdir, of NewPath for
	// a link, of OldPath and NewPath for a rename; none for the other ops.
	Dirs() []string

	// appendPayload appends the op's record payload (see EncodeOp).
	appendPayload(b []byte) []byte
}

// IsData reports record types that set bytes or the size of a regular file: write, truncate,
// fallocate. Replay after a crash applies these only.
func (t RecordType) IsData() bool { return t >= RecWrite && t <= RecFallocate }

// IsNamespace reports record types that add, remove or move names: create, mkdir, mknod,
// symlink, link, unlink, rmdir, rename.
func (t RecordType) IsNamespace() bool { return t >= RecCreate && t <= RecRename }

// IsAttr reports record types that change attributes: setattr, setxattr, removexattr.
func (t RecordType) IsAttr() bool { return t >= RecSetattr && t <= RecRemovexattr }

// Creates reports record types that make a new object (a new inode) under a new name: create,
// mkdir, mknod, symlink. A link adds a name to an existing object and is not one.
func (t RecordType) Creates() bool { return t >= RecCreate && t <= RecSymlink }

// OpWrite writes Data at Off. After DecodeOp, Data aliases the payload.
type OpWrite struct {
	Path string
	Ino  uint64 // inode number of the file in the source fs (used by local replay)
	Off  int64
	Data []byte
}

// OpTruncate sets the size of a file.
type OpTruncate struct {
	Path string
	Ino  uint64
	Size int64
}

// OpFallocate is fallocate(2) with Mode.
type OpFallocate struct {
	Path     string
	Ino      uint64
	Mode     uint32
	Off, Len int64
}

// OpCreate creates a regular file. Ino is the inode number in the source fs.
type OpCreate struct {
	Path           string
	Mode, Uid, Gid uint32
	Ino            uint64
}

// OpMkdir creates a directory.
type OpMkdir struct {
	Path           string
	Mode, Uid, Gid uint32
	Ino            uint64
}

// OpMknod creates a device, fifo or socket.
type OpMknod struct {
	Path           string
	Mode, Uid, Gid uint32
	Rdev           uint64
	Ino            uint64
}

// OpSymlink creates a symbolic link at Path pointing to Target (any string).
type OpSymlink struct {
	Path, Target string
	Uid, Gid     uint32
	Ino          uint64
}

// OpLink creates a hard link NewPath to OldPath.
type OpLink struct {
	OldPath, NewPath string
	Ino              uint64
}

// OpUnlink removes a non-directory.
type OpUnlink struct {
	Path string
	Ino  uint64
}

// OpRmdir removes a directory.
type OpRmdir struct {
	Path string
	Ino  uint64
}

// OpRename is renameat2(2) with Flags.
type OpRename struct {
	OldPath, NewPath string
	Flags            uint32
	Ino              uint64
}

// OpSetattr changes the attributes selected by Valid (SetMode, ...). Times
// are Unix nanoseconds. Path may be "." for the volume root.
type OpSetattr struct {
	Path           string
	Valid          uint32
	Mode, Uid, Gid uint32
	Atime, Mtime   int64
	Ino            uint64
}

// OpSetxattr sets an extended attribute. After DecodeOp, Value aliases the
// payload. Path may be ".".
type OpSetxattr struct {
	Path, Name string
	Value      []byte
	Flags      uint32
	Ino        uint64
}

// OpRemovexattr removes an extended attribute. Path may be ".".
type OpRemovexattr struct {
	Path, Name string
	Ino        uint64
}

// OpHot is an activity-log entry: region Region of backing inode Ino may
// hold writes not yet checkpointed.
type OpHot struct {
	Ino    uint64
	Region uint64
}

func (OpWrite) Type() RecordType       { return RecWrite }
func (OpTruncate) Type() RecordType    { return RecTruncate }
func (OpFallocate) Type() RecordType   { return RecFallocate }
func (OpCreate) Type() RecordType      { return RecCreate }
func (OpMkdir) Type() RecordType       { return RecMkdir }
func (OpMknod) Type() RecordType       { return RecMknod }
func (OpSymlink) Type() RecordType     { return RecSymlink }
func (OpLink) Type() RecordType        { return RecLink }
func (OpUnlink) Type() RecordType      { return RecUnlink }
func (OpRmdir) Type() RecordType       { return RecRmdir }
func (OpRename) Type() RecordType      { return RecRename }
func (OpSetattr) Type() RecordType     { return RecSetattr }
func (OpSetxattr) Type() RecordType    { return RecSetxattr }
func (OpRemovexattr) Type() RecordType { return RecRemovexattr }
func (OpHot) Type() RecordType         { return RecHot }

// ErrBadOp is wrapped by every DecodeOp failure.
var ErrBadOp = errors.New("journal: bad op")

// ValidPath reports whether p is a volume-relative path in canonical form:
// non-empty, at most MaxPathLen bytes, relative, filepath.Clean'ed, no NUL and
// not escaping the root. The root itself (".") is not a valid ValidPath path;
// ops that may name it say so.
func ValidPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > MaxPathLen:
		return fmt.Errorf("path longer than %d bytes", MaxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return errors.New("path contains NUL")
	case p == ".":
		return errors.New("path is the root")
	case p[0] == '/':
		return fmt.Errorf("absolute path %q", p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("path %q not in clean form", p)
	case p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("path %q escapes the root", p)
	}
	return nil
}

func validPathOrRoot(p string) error {
	if p == "." {
		return nil
	}
	return ValidPath(p)
}

// Encoding: fields in struct order. Unsigned integers are uvarints, signed
// ones zig-zag varints, strings and byte slices a uvarint length and the
// bytes, except OpWrite.Data which is the rest of the payload.

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func u(b []byte, v uint64) []byte  { return binary.AppendUvarint(b, v) }
func s64(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

// AppendWriteHeader appends the part of an OpWrite payload that precedes
// the data: EncodeOp(OpWrite{p, ino, off, d}) == AppendWriteHeader(nil, p, ino, off)+d.
// It lets callers pass the data as a separate Append part without copying it.
func AppendWriteHeader(dst []byte, path string, ino uint64, off int64) []byte {
	return s64(u(appendString(dst, path), ino), off)
}

// EncodeOp returns the record payload of op. It does not validate op.
func EncodeOp(op Op) []byte { return op.appendPayload(nil) }

func (o OpWrite) appendPayload(b []byte) []byte {
	if b == nil {
		b = make([]byte, 0, len(o.Path)+len(o.Data)+16)
	}
	return append(AppendWriteHeader(b, o.Path, o.Ino, o.Off), o.Data...)
}

func (o OpTruncate) appendPayload(b []byte) []byte {
	return s64(u(appendString(b, o.Path), o.Ino), o.Size)
}

func (o OpFallocate) appendPayload(b []byte) []byte {
	return s64(s64(u(u(appendString(b, o.Path), o.Ino), uint64(o.Mode)), o.Off), o.Len)
}

func (o OpCreate) appendPayload(b []byte) []byte {
	return u(u(u(u(appendString(b, o.Path), uint64(o.Mode)), uint64(o.Uid)), uint64(o.Gid)), o.Ino)
}

func (o OpMkdir) appendPayload(b []byte) []byte {
	return u(u(u(u(appendString(b, o.Path), uint64(o.Mode)), uint64(o.Uid)), uint64(o.Gid)), o.Ino)
}

func (o OpMknod) appendPayload(b []byte) []byte {
	return u(u(u(u(u(appendString(b, o.Path), uint64(o.Mode)), uint64(o.Uid)), uint64(o.Gid)), o.Rdev), o.Ino)
}

func (o OpSymlink) appendPayload(b []byte) []byte {
	return u(u(u(appendString(appendString(b, o.Path), o.Target), uint64(o.Uid)), uint64(o.Gid)), o.Ino)
}

func (o OpLink) appendPayload(b []byte) []byte {
	return u(appendString(appendString(b, o.OldPath), o.NewPath), o.Ino)
}

func (o OpUnlink) appendPayload(b []byte) []byte { return u(appendString(b, o.Path), o.Ino) }
func (o OpRmdir) appendPayload(b []byte) []byte  { return u(appendString(b, o.Path), o.Ino) }

func (o OpRename) appendPayload(b []byte) []byte {
	return u(u(appendString(appendString(b, o.OldPath), o.NewPath), uint64(o.Flags)), o.Ino)
}

func (o OpSetattr) appendPayload(b []byte) []byte {
	b = u(u(u(u(appendString(b, o.Path), uint64(o.Valid)), uint64(o.Mode)), uint64(o.Uid)), uint64(o.Gid))
	return u(s64(s64(b, o.Atime), o.Mtime), o.Ino)
}

func (o OpSetxattr) appendPayload(b []byte) []byte {
	return u(u(appendBytes(appendString(appendString(b, o.Path), o.Name), o.Value), uint64(o.Flags)), o.Ino)
}

func (o OpRemovexattr) appendPayload(b []byte) []byte {
	return u(appendString(appendString(b, o.Path), o.Name), o.Ino)
}

func (o OpHot) appendPayload(b []byte) []byte { return u(u(b, o.Ino), o.Region) }

// dec is a strict payload decoder: the first error sticks.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadOp, fmt.Sprintf(format, args...))
	}
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n != len(binary.AppendVarint(nil, v)) {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) u32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail("value %d overflows uint32", v)
		return 0
	}
	return uint32(v)
}

func (d *dec) bytes(max int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(max) || n > uint64(len(d.b)) {
		d.fail("length %d out of range", n)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) str(max int) string { return string(d.bytes(max)) }

func (d *dec) path(allowRoot bool) string {
	p := d.str(MaxPathLen)
	if d.err != nil {
		return ""
	}
	check := ValidPath
	if allowRoot {
		check = validPathOrRoot
	}
	if err := check(p); err != nil {
		d.fail("%v", err)
	}
	return p
}

func (d *dec) nonNeg(v int64, what string) int64 {
	if v < 0 {
		d.fail("negative %s %d", what, v)
	}
	return v
}

func (d *dec) xattrName() string {
	n := d.str(MaxXattrNameLen)
	if d.err == nil && (n == "" || strings.IndexByte(n, 0) >= 0) {
		d.fail("bad xattr name %q", n)
	}
	return n
}

// DecodeOp decodes a record payload strictly: every length is bounds-checked,
// paths must pass ValidPath (or be "." where the root is allowed), integers
// must be minimally encoded and trailing bytes are rejected. Byte-slice fields
// (OpWrite.Data, OpSetxattr.Value) alias payload.
func DecodeOp(typ RecordType, payload []byte) (Op, error) {
	d := &dec{b: payload}
	var op Op
	switch typ {
	case RecWrite:
		o := OpWrite{Path: d.path(false), Ino: d.uvarint()}
		o.Off = d.nonNeg(d.varint(), "offset")
		if d.err == nil {
			o.Data = d.b[:len(d.b):len(d.b)]
			d.b = nil
		}
		op = o
	case RecTruncate:
		o := OpTruncate{Path: d.path(false), Ino: d.uvarint()}
		o.Size = d.nonNeg(d.varint(), "size")
		op = o
	case RecFallocate:
		o := OpFallocate{Path: d.path(false), Ino: d.uvarint(), Mode: d.u32()}
		o.Off = d.nonNeg(d.varint(), "offset")
		o.Len = d.nonNeg(d.varint(), "length")
		op = o
	case RecCreate:
		op = OpCreate{Path: d.path(false), Mode: d.u32(), Uid: d.u32(), Gid: d.u32(), Ino: d.uvarint()}
	case RecMkdir:
		op = OpMkdir{Path: d.path(false), Mode: d.u32(), Uid: d.u32(), Gid: d.u32(), Ino: d.uvarint()}
	case RecMknod:
		op = OpMknod{Path: d.path(false), Mode: d.u32(), Uid: d.u32(), Gid: d.u32(), Rdev: d.uvarint(), Ino: d.uvarint()}
	case RecSymlink:
		o := OpSymlink{Path: d.path(false), Target: d.str(MaxPathLen)}
		if d.err == nil && (o.Target == "" || strings.IndexByte(o.Target, 0) >= 0) {
			d.fail("bad symlink target")
		}
		o.Uid, o.Gid, o.Ino = d.u32(), d.u32(), d.uvarint()
		op = o
	case RecLink:
		op = OpLink{OldPath: d.path(false), NewPath: d.path(false), Ino: d.uvarint()}
	case RecUnlink:
		op = OpUnlink{Path: d.path(false), Ino: d.uvarint()}
	case RecRmdir:
		op = OpRmdir{Path: d.path(false), Ino: d.uvarint()}
	case RecRename:
		op = OpRename{OldPath: d.path(false), NewPath: d.path(false), Flags: d.u32(), Ino: d.uvarint()}
	case RecSetattr:
		o := OpSetattr{Path: d.path(true), Valid: d.u32(), Mode: d.u32(), Uid: d.u32(), Gid: d.u32()}
		o.Atime, o.Mtime = d.varint(), d.varint()
		o.Ino = d.uvarint()
		if d.err == nil && o.Valid&^setValidMask != 0 {
			d.fail("unknown setattr bits %#x", o.Valid&^setValidMask)
		}
		op = o
	case RecSetxattr:
		o := OpSetxattr{Path: d.path(true), Name: d.xattrName()}
		o.Value = d.bytes(MaxXattrValue)
		o.Flags = d.u32()
		o.Ino = d.uvarint()
		op = o
	case RecRemovexattr:
		op = OpRemovexattr{Path: d.path(true), Name: d.xattrName(), Ino: d.uvarint()}
	case RecHot:
		op = OpHot{Ino: d.uvarint(), Region: d.uvarint()}
	default:
		return nil, fmt.Errorf("%w: %d", ErrBadRecordType, typ)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, d.err)
	}
	return op, nil
}

// OpPath returns the first path an op names (for a link or rename, the old path), "." for
// OpHot.
func OpPath(op Op) string {
	if p := op.Paths(); len(p) > 0 {
		return p[0]
	}
	return "."
}

func (o OpWrite) Inode() uint64       { return o.Ino }
func (o OpTruncate) Inode() uint64    { return o.Ino }
func (o OpFallocate) Inode() uint64   { return o.Ino }
func (o OpCreate) Inode() uint64      { return o.Ino }
func (o OpMkdir) Inode() uint64       { return o.Ino }
func (o OpMknod) Inode() uint64       { return o.Ino }
func (o OpSymlink) Inode() uint64     { return o.Ino }
func (o OpLink) Inode() uint64        { return o.Ino }
func (o OpUnlink) Inode() uint64      { return o.Ino }
func (o OpRmdir) Inode() uint64       { return o.Ino }
func (o OpRename) Inode() uint64      { return o.Ino }
func (o OpSetattr) Inode() uint64     { return o.Ino }
func (o OpSetxattr) Inode() uint64    { return o.Ino }
func (o OpRemovexattr) Inode() uint64 { return o.Ino }
func (o OpHot) Inode() uint64         { return o.Ino }

func (o OpWrite) Paths() []string       { return []string{o.Path} }
func (o OpTruncate) Paths() []string    { return []string{o.Path} }
func (o OpFallocate) Paths() []string   { return []string{o.Path} }
func (o OpCreate) Paths() []string      { return []string{o.Path} }
func (o OpMkdir) Paths() []string       { return []string{o.Path} }
func (o OpMknod) Paths() []string       { return []string{o.Path} }
func (o OpSymlink) Paths() []string     { return []string{o.Path} }
func (o OpLink) Paths() []string        { return []string{o.OldPath, o.NewPath} }
func (o OpUnlink) Paths() []string      { return []string{o.Path} }
func (o OpRmdir) Paths() []string       { return []string{o.Path} }
func (o OpRename) Paths() []string      { return []string{o.OldPath, o.NewPath} }
func (o OpSetattr) Paths() []string     { return []string{o.Path} }
func (o OpSetxattr) Paths() []string    { return []string{o.Path} }
func (o OpRemovexattr) Paths() []string { return []string{o.Path} }
func (o OpHot) Paths() []string         { return nil }

func (o OpWrite) Changed() string       { return o.Path }
func (o OpTruncate) Changed() string    { return o.Path }
func (o OpFallocate) Changed() string   { return o.Path }
func (o OpCreate) Changed() string      { return o.Path }
func (o OpMkdir) Changed() string       { return o.Path }
func (o OpMknod) Changed() string       { return o.Path }
func (o OpSymlink) Changed() string     { return o.Path }
func (o OpLink) Changed() string        { return o.NewPath }
func (o OpUnlink) Changed() string      { return o.Path }
func (o OpRmdir) Changed() string       { return o.Path }
func (o OpRename) Changed() string      { return o.NewPath }
func (o OpSetattr) Changed() string     { return o.Path }
func (o OpSetxattr) Changed() string    { return o.Path }
func (o OpRemovexattr) Changed() string { return o.Path }
func (o OpHot) Changed() string         { return "" }

func (o OpWrite) Object() string       { return o.Path }
func (o OpTruncate) Object() string    { return o.Path }
func (o OpFallocate) Object() string   { return o.Path }
func (o OpCreate) Object() string      { return o.Path }
func (o OpMkdir) Object() string       { return o.Path }
func (o OpMknod) Object() string       { return o.Path }
func (o OpSymlink) Object() string     { return o.Path }
func (o OpLink) Object() string        { return o.NewPath }
func (o OpUnlink) Object() string      { return "" }
func (o OpRmdir) Object() string       { return "" }
func (o OpRename) Object() string      { return "" }
func (o OpSetattr) Object() string     { return o.Path }
func (o OpSetxattr) Object() string    { return o.Path }
func (o OpRemovexattr) Object() string { return o.Path }
func (o OpHot) Object() string         { return "" }

func (o OpWrite) Dirs() []string       { return nil }
func (o OpTruncate) Dirs() []string    { return nil }
func (o OpFallocate) Dirs() []string   { return nil }
func (o OpCreate) Dirs() []string      { return []string{filepath.Dir(o.Path)} }
func (o OpMkdir) Dirs() []string       { return []string{filepath.Dir(o.Path)} }
func (o OpMknod) Dirs() []string       { return []string{filepath.Dir(o.Path)} }
func (o OpSymlink) Dirs() []string     { return []string{filepath.Dir(o.Path)} }
func (o OpLink) Dirs() []string        { return []string{filepath.Dir(o.NewPath)} }
func (o OpUnlink) Dirs() []string      { return []string{filepath.Dir(o.Path)} }
func (o OpRmdir) Dirs() []string       { return []string{filepath.Dir(o.Path)} }
func (o OpSetattr) Dirs() []string     { return nil }
func (o OpSetxattr) Dirs() []string    { return nil }
func (o OpRemovexattr) Dirs() []string { return nil }
func (o OpHot) Dirs() []string         { return nil }

func (o OpRename) Dirs() []string {
	from, to := filepath.Dir(o.OldPath), filepath.Dir(o.NewPath)
	if from == to {
		return []string{from}
	}
	return []string{from, to}
}
