package shipper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"drfs/wire"
)

// Difference is one place where the replica does not hold what the primary holds.
type Difference struct {
	Path string `json:"path"`
	Off  int64  `json:"off"`
	Len  int64  `json:"len"`
	What string `json:"what"`
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	Seq         uint64        `json:"seq"`
	Files       int           `json:"files"`
	Bytes       int64         `json:"bytes"`
	Pause       time.Duration `json:"pause_ns"`
	Differences []Difference  `json:"differences"`
}

// Verify compares the primary and the replica at the same seq: it pauses guest writes, lets
// the replica acknowledge everything, then compares the tree listing and the block hashes of
// every file. Guests are paused for the whole comparison (its length is reported).
func (s *Shipper) Verify(ctx context.Context) (res VerifyResult, err error) {
	res.Differences = []Difference{}
	if s.resyncOutstanding() {
		return res, errors.New("a resync is under way (see drfs status): the replica is not at a seq yet; retry later")
	}
	t0 := time.Now()
	resume := s.vol.Pause()
	defer func() {
		resume()
		res.Pause = time.Since(t0)
	}()
	res.Seq = uint64(s.j.LastSeq())
	if err := s.drain(ctx, res.Seq); err != nil {
		return res, err
	}
	src := s.vol.Source()
	err = s.verifyDir(ctx, src, ".", &res)
	sort.Slice(res.Differences, func(i, j int) bool {
		a, b := res.Differences[i], res.Differences[j]
		return a.Path < b.Path || a.Path == b.Path && a.Off < b.Off
	})
	if err == nil {
		s.m.verifyDiffs.Set(float64(len(res.Differences)))
	}
	return res, err
}

func (s *Shipper) verifyDir(ctx context.Context, src, p string, res *VerifyResult) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	mine, err := os.ReadDir(filepath.Join(src, p))
	if err != nil {
		return err
	}
	theirs, err := s.t.List(ctx, p)
	if err != nil {
		return err
	}
	have := map[string]wire.Entry{}
	for _, e := range theirs {
		have[e.Name] = e
	}
	for _, e := range mine {
		delete(have, e.Name())
		if err := s.verifyPath(ctx, src, child(p, e.Name()), res); err != nil {
			return err
		}
	}
	for name := range have {
		res.Differences = append(res.Differences, Difference{Path: child(p, name), Len: -1, What: "only on the replica"})
	}
	return nil
}

func (s *Shipper) verifyPath(ctx context.Context, src, p string, res *VerifyResult) error {
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(src, p), &st); err != nil {
		return err
	}
	typ := wire.TypeOf(st.Mode)
	block := wire.DefaultBlockSize
	re, err := s.t.Describe(ctx, p, 0, -1, block)
	if err != nil {
		return err
	}
	diff := func(off, n int64, what string) {
		res.Differences = append(res.Differences, Difference{Path: p, Off: off, Len: n, What: what})
	}
	switch {
	case !re.Exists:
		diff(0, -1, "missing on the replica")
		return nil
	case re.Type != typ:
		diff(0, -1, fmt.Sprintf("a %s on the primary, a %s on the replica", typ, re.Type))
		return nil
	case re.Mode != st.Mode:
		diff(0, -1, fmt.Sprintf("mode %o on the primary, %o on the replica", st.Mode, re.Mode))
	}
	switch typ {
	case wire.TypeDir:
		return s.verifyDir(ctx, src, p, res)
	case wire.TypeSymlink:
		buf := make([]byte, 4096)
		n, _ := unix.Readlink(filepath.Join(src, p), buf)
		if string(buf[:n]) != re.Target {
			diff(0, -1, fmt.Sprintf("symlink to %q on the primary, to %q on the replica", buf[:n], re.Target))
		}
	case wire.TypeFile:
		res.Files++
		res.Bytes += st.Size
		if re.Size != st.Size {
			diff(min(re.Size, st.Size), -1, fmt.Sprintf("size %d on the primary, %d on the replica", st.Size, re.Size))
		}
		fd, err := unix.Open(filepath.Join(src, p), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		mine, err := wire.HashBlocks(fd, 0, st.Size, block)
		if err != nil {
			return err
		}
		for i := 0; i < min(len(mine), len(re.Hashes)); i++ {
			if mine[i] == re.Hashes[i] {
				continue
			}
			// Merge runs of differing blocks into one extent.
			j := i
			for j+1 < min(len(mine), len(re.Hashes)) && mine[j+1] != re.Hashes[j+1] {
				j++
			}
			diff(int64(i)*int64(block), min(int64(j-i+1)*int64(block), st.Size-int64(i)*int64(block)), "content differs")
			i = j
		}
	}
	return nil
}
