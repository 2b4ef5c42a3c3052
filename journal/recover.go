package journal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"drfs/internal/fsutil"
	"drfs/internal/logging"
)

// recover scans every segment, repairs the tail and leaves j ready to append:
// j.segs, j.active, j.off, j.next and j.rec are set. See doc.go, "Recovery".
func (j *Journal) recover() error {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return err
	}
	var firsts []Seq
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, tmpSuffix) && e.Type().IsRegular() {
			// A spare segment that was never installed.
			if err := os.Remove(filepath.Join(j.dir, name)); err != nil {
				return fmt.Errorf("remove %s: %w", name, err)
			}
			continue
		}
		if first, ok := parseSegName(name); ok && e.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	slices.Sort(firsts)

	next := Seq(1)
	if len(firsts) == 0 && j.firstSeq > 1 {
		next = j.firstSeq
	}
	var lastEnd int64
	for i, first := range firsts {
		name := segName(first)
		isLast := i == len(firsts)-1
		s, res, err := j.openSegment(name)
		if err != nil {
			if isLast && errors.Is(err, errEmptySegment) {
				// Installed by a rollover whose header never reached the
				// disk (power loss): it cannot hold acknowledged records.
				j.log.Info("journal: removing empty segment", "segment", name)
				if err := os.Remove(filepath.Join(j.dir, name)); err != nil {
					return fmt.Errorf("remove %s: %w", name, err)
				}
				break
			}
			if errors.Is(err, errEmptySegment) {
				return fmt.Errorf("segment %s: %w", name, ErrBadHeader)
			}
			return err
		}
		j.segs = append(j.segs, s)
		if res.first != first {
			return fmt.Errorf("segment %s: %w: header says first seq %d", name, ErrBadHeader, res.first)
		}
		if i > 0 && first != next {
			return fmt.Errorf("segment %s: %w: want first seq %d", name, ErrSeqGap, next)
		}
		next = res.last + 1
		lastEnd = res.end
		if res.err == io.EOF {
			continue
		}
		// The only crash state that leaves a bad frame outside the last
		// segment is an append in flight across a rollover: the
		// second-to-last segment has a torn tail and everything in the last
		// one was never acknowledged.
		tornBeforeLast := i == len(firsts)-2 && res.err == io.ErrUnexpectedEOF
		if !isLast && !tornBeforeLast {
			if res.err == io.ErrUnexpectedEOF {
				return fmt.Errorf("segment %s: torn at offset %d: %w", name, res.end, res.err)
			}
			return fmt.Errorf("segment %s: %w", name, res.err)
		}
		j.log.Warn("journal: cutting a bad tail", "segment", name, "bytes", res.garbageEnd-res.end, "offset", res.end, logging.Err(res.err))
		if err := j.cut(s, res.end, res.garbageEnd); err != nil {
			return err
		}
		if tornBeforeLast {
			lname := segName(firsts[i+1])
			j.log.Warn("journal: moving unacknowledged segment aside", "segment", name, "moved", lname)
			if err := j.moveBroken(lname); err != nil {
				return err
			}
			break
		}
	}

	if len(j.segs) == 0 {
		s, err := allocSegment(j.dir, j.allocID.Add(1), j.segSize)
		if err != nil {
			return err
		}
		tmp := s.name
		s.first, s.name = next, segName(next)
		encodeSegHeader(s.data, next)
		if err := unix.Fdatasync(int(s.f.Fd())); err != nil {
			s.unmapClose()
			return fmt.Errorf("sync segment %s: %w", s.name, err)
		}
		if err := os.Rename(filepath.Join(j.dir, tmp), filepath.Join(j.dir, s.name)); err != nil {
			s.unmapClose()
			return fmt.Errorf("install segment %s: %w", s.name, err)
		}
		if err := fsutil.SyncDir(j.dir); err != nil {
			s.unmapClose()
			return fmt.Errorf("sync dir: %w", err)
		}
		j.segs = append(j.segs, s)
		j.active, j.off = s, segHeaderSize
	} else {
		s := j.segs[len(j.segs)-1]
		// Only the active segment is mapped writable.
		if err := unix.Munmap(s.data); err != nil {
			return fmt.Errorf("remap %s: %w", s.name, err)
		}
		s.data = nil
		data, err := mapSegment(s.f, s.size, true)
		if err != nil {
			return fmt.Errorf("remap %s: %w", s.name, err)
		}
		s.data = data
		j.active, j.off = s, lastEnd
	}
	j.next = next
	j.rec.LastSeq = next - 1
	if first := j.segs[0].first; first < next {
		j.rec.FirstSeq = first
	}
	return nil
}

var errEmptySegment = errors.New("journal: empty segment")

// openSegment opens, maps read-only and scans one segment.
func (j *Journal) openSegment(name string) (*segment, scanResult, error) {
	path := filepath.Join(j.dir, name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, scanResult{}, fmt.Errorf("open segment %s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, scanResult{}, fmt.Errorf("stat segment %s: %w", name, err)
	}
	size := st.Size()
	if size < segHeaderSize {
		f.Close()
		if size == 0 {
			return nil, scanResult{}, errEmptySegment
		}
		return nil, scanResult{}, fmt.Errorf("segment %s: %w: %d bytes", name, ErrBadHeader, size)
	}
	data, err := mapSegment(f, size, false)
	if err != nil {
		f.Close()
		return nil, scanResult{}, fmt.Errorf("mmap segment %s: %w", name, err)
	}
	s := &segment{name: name, f: f, data: data, size: size}
	s.refs.Store(1)
	res, err := scanSegment(data, nil)
	if err != nil {
		empty := isZero(data)
		s.unmapClose()
		if empty {
			return nil, scanResult{}, errEmptySegment
		}
		return nil, scanResult{}, fmt.Errorf("segment %s: %w", name, err)
	}
	s.first = res.first
	return s, res, nil
}

// cut saves s.data[off:end] under broken/ and zeroes it in the segment.
func (j *Journal) cut(s *segment, off, end int64) error {
	if end <= off {
		return nil
	}
	bdir := filepath.Join(j.dir, brokenDir)
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return fmt.Errorf("save torn tail: %w", err)
	}
	bname := filepath.Join(bdir, fmt.Sprintf("%s.%d.broken", s.name, off))
	if err := writeFileSync(bname, s.data[off:end]); err != nil {
		return fmt.Errorf("save torn tail: %w", err)
	}
	if err := fsutil.SyncDir(bdir); err != nil {
		return fmt.Errorf("save torn tail: %w", err)
	}
	if err := fsutil.SyncDir(j.dir); err != nil {
		return fmt.Errorf("save torn tail: %w", err)
	}
	zeros := make([]byte, min(end-off, zeroChunk))
	for o := off; o < end; {
		n := min(int64(len(zeros)), end-o)
		if _, err := s.f.WriteAt(zeros[:n], o); err != nil {
			return fmt.Errorf("zero torn tail of %s: %w", s.name, err)
		}
		o += n
	}
	if err := unix.Fdatasync(int(s.f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", s.name, err)
	}
	j.rec.TornBytes += end - off
	if j.rec.BrokenFile == "" {
		j.rec.BrokenFile = bname
	}
	return nil
}

// moveBroken renames a whole segment into broken/.
func (j *Journal) moveBroken(name string) error {
	bdir := filepath.Join(j.dir, brokenDir)
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return fmt.Errorf("move %s aside: %w", name, err)
	}
	src := filepath.Join(j.dir, name)
	if b, err := os.ReadFile(src); err == nil {
		j.rec.TornBytes += max(0, int64(lastNonZero(b)+1-segHeaderSize))
	}
	dst := filepath.Join(bdir, name+".0.broken")
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("move %s aside: %w", name, err)
	}
	if j.rec.BrokenFile == "" {
		j.rec.BrokenFile = dst
	}
	if err := fsutil.SyncDir(bdir); err != nil {
		return fmt.Errorf("move %s aside: %w", name, err)
	}
	return fsutil.SyncDir(j.dir)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
