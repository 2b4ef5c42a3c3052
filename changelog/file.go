package changelog

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"

	"drfs/internal/fsutil"
)

// WriteFile writes l to dir under FileName(l.Header), atomically: it writes
// a temporary file in dir, fsyncs it, renames it into place and fsyncs dir.
// A journal log already there (the same seq range) is replaced.
func WriteFile(dir string, l *Log) (path string, st Stats, err error) {
	f, err := os.CreateTemp(dir, ".tmp-*.dcl")
	if err != nil {
		return "", Stats{}, fmt.Errorf("write change log: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if st, err = Encode(bw, l); err != nil {
		return "", Stats{}, err
	}
	if err = bw.Flush(); err != nil {
		return "", Stats{}, fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err = f.Sync(); err != nil {
		return "", Stats{}, fmt.Errorf("fsync %s: %w", f.Name(), err)
	}
	if err = f.Close(); err != nil {
		return "", Stats{}, fmt.Errorf("close %s: %w", f.Name(), err)
	}
	path = filepath.Join(dir, FileName(l.Header))
	if err = os.Rename(f.Name(), path); err != nil {
		return "", Stats{}, fmt.Errorf("install change log: %w", err)
	}
	if err = fsutil.SyncDir(dir); err != nil {
		// The log is in place but its name may not be durable; report it
		// without removing the file (the rename can't be undone safely).
		return path, st, err
	}
	return path, st, nil
}

// ReadFile decodes the log in the file at path (see Decode).
func ReadFile(path string, lim Limits) (*Log, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read change log: %w", err)
	}
	defer f.Close()
	l, err := Decode(bufio.NewReaderSize(f, 1<<20), lim)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// ReadFileHeader reads and checks only the header of the log in the file at path, so a tool
// can order many logs before decoding them one at a time.
func ReadFileHeader(path string) (Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, fmt.Errorf("read change log: %w", err)
	}
	defer f.Close()
	h, _, err := decodeHeader(bufio.NewReaderSize(f, 4<<10), Limits{}.withDefaults())
	if err != nil {
		return Header{}, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}
