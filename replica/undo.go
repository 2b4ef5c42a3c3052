package replica

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Undo file format: a sequence of entries, each
//
//	| CRC32C (4B) | length (4B) | kind (1B) | fields ... |
//
// with the CRC over length..fields. Entries are written before the change they undo, and the
// file is fsynced before that change is made, so after a crash every applied change has its
// entry; a torn last entry belongs to a change that was never made. Rolling back applies the
// entries in reverse order; every entry restores a prior state, so applying it twice is
// harmless (a crash during rollback just rolls back again).
//
// Fields use the journal's conventions: uvarint lengths and integers, zig-zag varint offsets.
type undoKind uint8

const (
	undoBytes     undoKind = 1 // path, off, data: pwrite the old bytes back
	undoSize      undoKind = 2 // path, size: truncate back to the old size
	undoRemove    undoKind = 3 // path: remove an object the log created
	undoMoveBack  undoKind = 4 // trash path, path: move an object the log removed back
	undoRename    undoKind = 5 // from, to, flags: rename back
	undoAttr      undoKind = 6 // path, mode, uid, gid, atime, mtime: restore attributes
	undoXattr     undoKind = 7 // path, name, value: restore an extended attribute
	undoNoXattr   undoKind = 8 // path, name: remove an extended attribute the log added
	undoMaxLength          = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type undoEntry struct {
	kind         undoKind
	path, other  string // other: trash path (undoMoveBack), rename target, xattr name
	off, size    int64
	data         []byte
	flags        uint32
	mode         uint32
	uid, gid     uint32
	atime, mtime int64
}

func (e *undoEntry) encode(b []byte) []byte {
	b = append(b, byte(e.kind))
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	str(e.path)
	str(e.other)
	b = binary.AppendVarint(b, e.off)
	b = binary.AppendVarint(b, e.size)
	b = binary.AppendUvarint(b, uint64(e.flags))
	b = binary.AppendUvarint(b, uint64(e.mode))
	b = binary.AppendUvarint(b, uint64(e.uid))
	b = binary.AppendUvarint(b, uint64(e.gid))
	b = binary.AppendVarint(b, e.atime)
	b = binary.AppendVarint(b, e.mtime)
	b = binary.AppendUvarint(b, uint64(len(e.data)))
	return append(b, e.data...)
}

func decodeUndo(b []byte) (undoEntry, error) {
	var e undoEntry
	bad := errors.New("replica: bad undo entry")
	if len(b) < 1 {
		return e, bad
	}
	e.kind = undoKind(b[0])
	b = b[1:]
	var err error
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			err = bad
			return 0
		}
		b = b[n:]
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			err = bad
			return 0
		}
		b = b[n:]
		return v
	}
	bs := func() []byte {
		n := uv()
		if err != nil || n > uint64(len(b)) {
			err = bad
			return nil
		}
		v := b[:n]
		b = b[n:]
		return v
	}
	e.path = string(bs())
	e.other = string(bs())
	e.off, e.size = sv(), sv()
	e.flags, e.mode, e.uid, e.gid = uint32(uv()), uint32(uv()), uint32(uv()), uint32(uv())
	e.atime, e.mtime = sv(), sv()
	e.data = bs()
	if err == nil && len(b) != 0 {
		err = bad
	}
	return e, err
}

// undoWriter appends entries to an undo file.
type undoWriter struct {
	f   *os.File
	w   *bufio.Writer
	buf []byte
	n   int64
}

func createUndo(path string) (*undoWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &undoWriter{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (u *undoWriter) add(e undoEntry) error {
	u.buf = e.encode(u.buf[:0])
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(u.buf)))
	c := crc32.Update(0, castagnoli, hdr[4:])
	c = crc32.Update(c, castagnoli, u.buf)
	binary.LittleEndian.PutUint32(hdr[:4], c)
	if _, err := u.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := u.w.Write(u.buf)
	u.n += int64(len(hdr) + len(u.buf))
	return err
}

// sync makes every entry added so far durable.
func (u *undoWriter) sync() error {
	if err := u.w.Flush(); err != nil {
		return err
	}
	return unix.Fdatasync(int(u.f.Fd()))
}

func (u *undoWriter) close() error {
	err := u.sync()
	if cerr := u.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readUndo returns the valid entries of an undo file; a torn or corrupt tail ends the list
// (its change was never made).
func readUndo(path string) ([]undoEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var out []undoEntry
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return out, nil
		}
		n := binary.LittleEndian.Uint32(hdr[4:])
		if n == 0 || n > undoMaxLength {
			return out, nil
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return out, nil
		}
		c := crc32.Update(0, castagnoli, hdr[4:])
		if crc32.Update(c, castagnoli, b) != binary.LittleEndian.Uint32(hdr[:4]) {
			return out, nil
		}
		e, err := decodeUndo(b)
		if err != nil {
			return out, fmt.Errorf("undo %s: %w", path, err)
		}
		out = append(out, e)
	}
}
