package journal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// Info summarises a journal directory without opening it for writing.
type Info struct {
	FirstSeq, LastSeq Seq
	Size              int64
	Segments          int
}

// segmentFiles lists the segment files of dir in seq order.
func segmentFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if _, ok := parseSegName(e.Name()); ok {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// ReadDir calls fn for every record in [from, to] of the journal in dir, read-only, for tools
// such as `drfs journal dump`. A torn tail ends the walk quietly (Open would cut it); corruption
// is returned. It must not be used on a journal that a running drfs is appending to.
func ReadDir(dir string, from, to Seq, fn func(Record) error) error {
	names, err := segmentFiles(dir)
	if err != nil {
		return err
	}
	for i, name := range names {
		if i+1 < len(names) {
			if next, _ := parseSegName(names[i+1]); next <= from {
				continue
			}
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		stop := errors.New("stop")
		err = ReadSegment(data, func(r Record) error {
			if r.Seq < from {
				return nil
			}
			if r.Seq > to {
				return stop
			}
			return fn(r)
		})
		if errors.Is(err, stop) {
			return nil
		}
		if errors.Is(err, io.ErrUnexpectedEOF) && i == len(names)-1 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("segment %s: %w", name, err)
		}
	}
	return nil
}

// Inspect returns the seq range and size of the journal in dir, read-only.
func Inspect(dir string) (Info, error) {
	var info Info
	names, err := segmentFiles(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return info, nil
		}
		return info, err
	}
	info.Segments = len(names)
	for _, name := range names {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil {
			info.Size += st.Size()
		}
	}
	if len(names) == 0 {
		return info, nil
	}
	first, _ := parseSegName(names[0])
	last := first - 1
	err = ReadDir(dir, 0, ^Seq(0), func(r Record) error {
		if info.FirstSeq == 0 {
			info.FirstSeq = r.Seq
		}
		last = r.Seq
		return nil
	})
	info.LastSeq = last
	return info, err
}
