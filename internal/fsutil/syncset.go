package fsutil

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// SyncSet collects what a batch of changes touched, to be fsynced once, later: a duplicated
// descriptor per file or directory (one per inode, so a rename or an unlink after Add does not
// matter) and directories by path. It is how drfs makes its changes durable without syncfs.
// The zero value is ready to use; methods are safe for concurrent use.
type SyncSet struct {
	mu   sync.Mutex
	fds  map[[2]uint64]int // (dev, ino) -> duplicated descriptor
	dirs map[string]bool
}

// Add remembers the object open as fd, unless the set already holds its inode.
func (s *SyncSet) Add(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	key := [2]uint64{st.Dev, st.Ino}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.fds[key]; ok {
		return nil
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("dup descriptor of inode %d: %w", st.Ino, err)
	}
	if s.fds == nil {
		s.fds = map[[2]uint64]int{}
	}
	s.fds[key] = dup
	return nil
}

// AddDir remembers the directory at path.
func (s *SyncSet) AddDir(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirs == nil {
		s.dirs = map[string]bool{}
	}
	s.dirs[path] = true
}

// Len returns how many descriptors the set holds.
func (s *SyncSet) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.fds)
}

// Sync fsyncs everything in the set, two at a time, empties it and closes the descriptors. A
// descriptor whose fsync fails is handed to retry (when not nil), so that a later Sync tries it
// again; every failure is returned.
func (s *SyncSet) Sync(retry *SyncSet) error {
	s.mu.Lock()
	fds, dirs := s.fds, s.dirs
	s.fds, s.dirs = nil, nil
	s.mu.Unlock()
	type res struct {
		fd  int
		err error
	}
	work, out := make(chan int), make(chan res)
	const workers = 2
	for range workers {
		go func() {
			for fd := range work {
				out <- res{fd, unix.Fsync(fd)}
			}
		}()
	}
	go func() {
		for _, fd := range fds {
			work <- fd
		}
		close(work)
	}()
	var errs []error
	for range len(fds) {
		r := <-out
		if r.err != nil {
			errs = append(errs, fmt.Errorf("fsync: %w", r.err))
			if retry != nil {
				if err := retry.Add(r.fd); err != nil {
					errs = append(errs, fmt.Errorf("keep for a later sync: %w", err))
				}
			}
		}
		unix.Close(r.fd)
	}
	for d := range dirs {
		if err := SyncDir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close drops everything without syncing.
func (s *SyncSet) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fd := range s.fds {
		unix.Close(fd)
	}
	s.fds, s.dirs = nil, nil
}
