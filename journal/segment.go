package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

const (
	segSuffix = ".seg"
	tmpSuffix = ".tmp"
	brokenDir = "broken"
	zeroChunk = 1 << 20
)

// segment is one mapped segment file. The journal's list holds one reference;
// readers and the flush loop take more while they use the mapping.
type segment struct {
	name  string // base name, %016x.seg
	first Seq
	f     *os.File
	data  []byte // MAP_SHARED mapping of the whole file
	size  int64

	refs        atomic.Int32
	needDirSync atomic.Bool // renamed into place, directory not yet fsynced
}

func segName(first Seq) string { return fmt.Sprintf("%016x%s", uint64(first), segSuffix) }

func parseSegName(name string) (Seq, bool) {
	if len(name) != 16+len(segSuffix) || !strings.HasSuffix(name, segSuffix) {
		return 0, false
	}
	v, err := strconv.ParseUint(name[:16], 16, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return Seq(v), true
}

func (s *segment) acquire() { s.refs.Add(1) }

func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.unmapClose()
	}
}

func (s *segment) unmapClose() error {
	var err error
	if s.data != nil {
		err = unix.Munmap(s.data)
		s.data = nil
	}
	if s.f != nil {
		err = errors.Join(err, s.f.Close())
		s.f = nil
	}
	return err
}

// mapSegment maps an open segment file. Only the active segment needs to be
// writable.
func mapSegment(f *os.File, size int64, writable bool) ([]byte, error) {
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	return unix.Mmap(int(f.Fd()), 0, int(size), prot, unix.MAP_SHARED)
}

// allocSegment creates a temporary segment file of size bytes in dir, filled
// with real zeros (not a sparse file and not unwritten fallocate extents, so
// later fdatasyncs never have to log block allocation) and synced, then maps
// it read-write. Because every block exists before the mapping is touched, a
// full disk is reported here as ENOSPC and can never surface as SIGBUS.
func allocSegment(dir string, id uint64, size int64) (*segment, error) {
	path := filepath.Join(dir, fmt.Sprintf("prealloc-%d%s", id, tmpSuffix))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	fail := func(err error) (*segment, error) {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	// fallocate first so ENOSPC is cheap to detect; ignore EOPNOTSUPP.
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return fail(fmt.Errorf("preallocate segment: %w", err))
	}
	zeros := make([]byte, min(int64(zeroChunk), size))
	for off := int64(0); off < size; {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return fail(fmt.Errorf("zero segment: %w", err))
		}
		off += n
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("sync segment: %w", err))
	}
	data, err := mapSegment(f, size, true)
	if err != nil {
		return fail(fmt.Errorf("mmap segment: %w", err))
	}
	s := &segment{name: filepath.Base(path), f: f, data: data, size: size}
	s.refs.Store(1)
	return s, nil
}
