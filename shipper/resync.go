package shipper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"drfs/changelog"
	"drfs/internal/units"
	"drfs/journal"
	"drfs/volume"
	"drfs/wire"
)

// resync repairs every pending extent by comparing block hashes with the replica and sending
// only the blocks that differ (and the namespace changes that make the trees match). It is how
// a new replica gets its initial copy, how a replica catches up after the journal was degraded,
// and how regions marked after a crash or after changes behind drfs's back are repaired. It is
// resumable: an extent is cleared only after its repair was acknowledged, and a repeated pass
// finds the blocks already sent equal.
func (s *Shipper) resync(ctx context.Context) error {
	exts, err := s.vol.Meta().Resync()
	if err != nil || len(exts) == 0 {
		return err
	}
	s.setState(wire.StateSyncing)
	gen := s.vol.Generation()
	if err := s.t.ResyncBegin(ctx, s.vol.ID(), gen); err != nil {
		return fmt.Errorf("begin resync: %w", err)
	}
	rs := &resyncer{s: s, ctx: ctx, src: s.vol.Source(), seen: map[uint64]string{}}
	rs.total = rs.estimate(exts)
	s.mu.Lock()
	s.syncDone, s.syncTotal = 0, rs.total
	s.mu.Unlock()
	sort.Slice(exts, func(i, j int) bool { return exts[i].Path < exts[j].Path })
	s.log.Info("resync: comparing extents by block hash", "extents", len(exts), "bytes", units.Bytes(rs.total))
	for _, e := range exts {
		if err := rs.path(e.Path, e.Off, e.Len); err != nil {
			return fmt.Errorf("resync %s: %w", e.Path, err)
		}
		if err := rs.flush(); err != nil {
			return err
		}
		if err := s.vol.Meta().ClearResync([]volume.Extent{e}); err != nil {
			return err
		}
	}
	s.log.Info("resync: sent", "sent", units.Bytes(rs.sent), "logs", rs.logs, "compared", units.Bytes(rs.done))
	return nil
}

type resyncer struct {
	s     *Shipper
	ctx   context.Context
	src   string
	ops   []journal.Op
	raw   int64
	seen  map[uint64]string // inode -> first path sent, to keep hard links linked
	total int64
	done  int64
	sent  int64
	logs  int
}

const resyncLogBytes = 32 << 20

// limit is the raw size at which repairs are sent as one log: what the link grants a log now.
func (rs *resyncer) limit() int64 { return min(resyncLogBytes, rs.s.member.Quantum()) }

// estimate sums the file bytes under the extents, for progress.
func (rs *resyncer) estimate(exts []volume.Extent) int64 {
	var total int64
	for _, e := range exts {
		p := filepath.Join(rs.src, e.Path)
		if e.Len >= 0 {
			total += e.Len
			continue
		}
		filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					total += fi.Size()
				}
			}
			return nil
		})
	}
	return total
}

func (rs *resyncer) progress(n int64) {
	rs.done += n
	s := rs.s
	s.mu.Lock()
	s.syncDone = rs.done
	s.mu.Unlock()
	if s.cfg.Progress != nil {
		s.cfg.Progress(rs.done, rs.total)
	}
}

func (rs *resyncer) emit(op journal.Op, raw int64) error {
	rs.ops = append(rs.ops, op)
	rs.raw += raw + 64
	if rs.raw >= rs.limit() {
		return rs.flush()
	}
	return nil
}

// flush sends the accumulated repairs as one resync change log.
func (rs *resyncer) flush() error {
	if len(rs.ops) == 0 {
		return nil
	}
	s := rs.s
	seq := uint64(s.j.LastSeq())
	// The replica records the seq a resync log reaches: it must be durable here first, or a
	// power loss of the journal would hand the same seqs to new records the replica then
	// believes it has (the two sides would diverge for good).
	if err := s.j.Sync(journal.Seq(seq)); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	l := &changelog.Log{
		Header: changelog.Header{Kind: changelog.KindResync, VolumeID: s.vol.ID(), Generation: s.vol.Generation(), ToSeq: seq, Created: time.Now().UTC()},
		Ops:    rs.ops,
	}
	b, stats, err := changelog.Marshal(l)
	if err != nil {
		return err
	}
	g, err := s.member.Acquire(rs.ctx)
	if err != nil {
		return err
	}
	_, err = s.send(rs.ctx, g, b)
	if err != nil {
		g.Done(0, 0, false, err)
	} else {
		g.Done(stats.RawBytes, int64(len(b)), rs.raw >= rs.limit(), nil)
	}
	if err != nil {
		var ref *RefusedError
		if errors.As(err, &ref) && (ref.Code == wire.CodeStale || ref.Code == wire.CodeVolume) {
			return fmt.Errorf("%w: %s", ErrFenced, ref.Msg)
		}
		return fmt.Errorf("send resync log: %w", err)
	}
	rs.logs++
	rs.sent += int64(len(b))
	s.m.rawBytes.Add(float64(stats.RawBytes))
	s.m.wireBytes.Add(float64(len(b)))
	s.m.resyncBytes.Add(float64(len(b)))
	rs.ops, rs.raw = nil, 0
	return nil
}

func child(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// path repairs p (n < 0: the whole object, recursively for a directory).
func (rs *resyncer) path(p string, off, n int64) error {
	if err := rs.ctx.Err(); err != nil {
		return err
	}
	var st unix.Stat_t
	err := unix.Lstat(filepath.Join(rs.src, p), &st)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		re, err := rs.s.t.Describe(rs.ctx, p, 0, 0, 0)
		if err != nil || !re.Exists {
			return err
		}
		return rs.remove(p, re.Type)
	}
	if err != nil {
		return err
	}
	switch wire.TypeOf(st.Mode) {
	case wire.TypeDir:
		return rs.dir(p, &st)
	case wire.TypeFile:
		return rs.file(p, &st, off, n)
	case wire.TypeSymlink:
		return rs.symlink(p, &st)
	default:
		re, err := rs.s.t.Describe(rs.ctx, p, 0, 0, 0)
		if err != nil {
			return err
		}
		if re.Exists && re.Type == wire.TypeOther && re.Mode == st.Mode {
			return nil
		}
		if re.Exists {
			if err := rs.remove(p, re.Type); err != nil {
				return err
			}
		}
		return rs.emit(journal.OpMknod{Path: p, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid, Rdev: st.Rdev}, 0)
	}
}

// remove deletes p on the replica, depth first for a directory.
func (rs *resyncer) remove(p string, typ wire.EntryType) error {
	if typ == wire.TypeDir {
		ents, err := rs.s.t.List(rs.ctx, p)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := rs.remove(child(p, e.Name), e.Type); err != nil {
				return err
			}
		}
		return rs.emit(journal.OpRmdir{Path: p}, 0)
	}
	return rs.emit(journal.OpUnlink{Path: p}, 0)
}

func attrOp(p string, st *unix.Stat_t, withTimes bool) journal.OpSetattr {
	op := journal.OpSetattr{Path: p, Valid: journal.SetMode | journal.SetUid | journal.SetGid, Mode: st.Mode & 07777, Uid: st.Uid, Gid: st.Gid}
	if withTimes {
		op.Valid |= journal.SetMtime
		op.Mtime = st.Mtim.Nano()
	}
	return op
}

func (rs *resyncer) dir(p string, st *unix.Stat_t) error {
	re, err := rs.s.t.Describe(rs.ctx, p, 0, 0, 0)
	if err != nil {
		return err
	}
	if re.Exists && re.Type != wire.TypeDir {
		if err := rs.remove(p, re.Type); err != nil {
			return err
		}
		re.Exists = false
	}
	if !re.Exists {
		if err := rs.emit(journal.OpMkdir{Path: p, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid}, 0); err != nil {
			return err
		}
	} else if re.Mode != st.Mode || re.Uid != st.Uid || re.Gid != st.Gid {
		if err := rs.emit(attrOp(p, st, false), 0); err != nil {
			return err
		}
	}
	if err := rs.xattrs(p, re.Xattrs); err != nil {
		return err
	}
	mine, err := os.ReadDir(filepath.Join(rs.src, p))
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, e := range mine {
		have[e.Name()] = true
	}
	if re.Exists {
		theirs, err := rs.s.t.List(rs.ctx, p)
		if err != nil {
			return err
		}
		for _, e := range theirs {
			if !have[e.Name] {
				if err := rs.remove(child(p, e.Name), e.Type); err != nil {
					return err
				}
			}
		}
	}
	for _, e := range mine {
		if err := rs.path(child(p, e.Name()), 0, -1); err != nil {
			return err
		}
	}
	return nil
}

func (rs *resyncer) symlink(p string, st *unix.Stat_t) error {
	buf := make([]byte, 4096)
	k, err := unix.Readlink(filepath.Join(rs.src, p), buf)
	if err != nil {
		return err
	}
	target := string(buf[:k])
	re, err := rs.s.t.Describe(rs.ctx, p, 0, 0, 0)
	if err != nil {
		return err
	}
	if re.Exists && re.Type == wire.TypeSymlink && re.Target == target {
		return nil
	}
	if re.Exists {
		if err := rs.remove(p, re.Type); err != nil {
			return err
		}
	}
	return rs.emit(journal.OpSymlink{Path: p, Target: target, Uid: st.Uid, Gid: st.Gid}, 0)
}

// file repairs [off, off+n) of a regular file (n < 0: all of it) block by block.
func (rs *resyncer) file(p string, st *unix.Stat_t, off, n int64) error {
	if st.Nlink > 1 {
		if first, ok := rs.seen[st.Ino]; ok && first != p {
			re, err := rs.s.t.Describe(rs.ctx, p, 0, 0, 0)
			if err != nil {
				return err
			}
			fe, err := rs.s.t.Describe(rs.ctx, first, 0, 0, 0)
			if err != nil {
				return err
			}
			if re.Exists && fe.Exists && re.Ino == fe.Ino {
				return nil
			}
			if re.Exists {
				if err := rs.remove(p, re.Type); err != nil {
					return err
				}
			}
			return rs.emit(journal.OpLink{OldPath: first, NewPath: p}, 0)
		}
		rs.seen[st.Ino] = p
	}
	fd, err := unix.Open(filepath.Join(rs.src, p), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // removed meanwhile: its unlink is journaled
		}
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, st); err != nil {
		return err
	}
	size := st.Size
	whole := n < 0
	if n < 0 || off+n > size {
		n = max(size-off, 0)
	}
	// Whole files (initial sync) compare in 64 KiB blocks; known extents (diverged, hot or
	// degraded regions) in 4 KiB blocks, so what travels stays close to what changed.
	block := wire.DefaultBlockSize
	if !whole {
		block = wire.FineBlockSize
	}
	zeroHash := wire.ZeroBlockHash(block)
	off = off / int64(block) * int64(block)
	re, err := rs.s.t.Describe(rs.ctx, p, 0, 0, 0)
	if err != nil {
		return err
	}
	if re.Exists && re.Type != wire.TypeFile {
		if err := rs.remove(p, re.Type); err != nil {
			return err
		}
		re.Exists = false
	}
	if !re.Exists {
		if err := rs.emit(journal.OpCreate{Path: p, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid}, 0); err != nil {
			return err
		}
		re.Size = 0
	}
	if re.Size != size {
		if err := rs.emit(journal.OpTruncate{Path: p, Size: size}, 0); err != nil {
			return err
		}
	}
	const span = 64 << 20 // one hash request (and one progress step) per span
	buf := make([]byte, block)
	for pos := off; pos < off+n; pos += span {
		k := min(span, off+n-pos)
		mine, err := wire.HashBlocks(fd, pos, k, block)
		if err != nil {
			return err
		}
		var theirs []uint64
		if re.Exists && pos < re.Size {
			e, err := rs.s.t.Describe(rs.ctx, p, pos, k, block)
			if err != nil {
				return err
			}
			theirs = e.Hashes
		}
		for i, h := range mine {
			if i < len(theirs) && theirs[i] == h {
				continue
			}
			if !re.Exists && h == zeroHash {
				continue // a new file is sparse where the source reads zeros
			}
			at := pos + int64(i)*int64(block)
			r, err := unix.Pread(fd, buf, at)
			if err != nil {
				return err
			}
			if r == 0 {
				break
			}
			if err := rs.emit(journal.OpWrite{Path: p, Off: at, Data: append([]byte(nil), buf[:r]...)}, int64(r)); err != nil {
				return err
			}
		}
		rs.progress(k)
	}
	if err := rs.xattrs(p, re.Xattrs); err != nil {
		return err
	}
	if !re.Exists || re.Mode != st.Mode || re.Uid != st.Uid || re.Gid != st.Gid {
		return rs.emit(attrOp(p, st, false), 0)
	}
	return nil
}

// xattrs makes the replica's extended attributes of p equal to the source's.
func (rs *resyncer) xattrs(p string, theirs map[string][]byte) error {
	mine, err := wire.ReadXattrs(filepath.Join(rs.src, p))
	if err != nil {
		return err
	}
	for name, val := range mine {
		if old, ok := theirs[name]; !ok || !bytes.Equal(old, val) {
			if err := rs.emit(journal.OpSetxattr{Path: p, Name: name, Value: val}, int64(len(val))); err != nil {
				return err
			}
		}
	}
	for name := range theirs {
		if _, ok := mine[name]; !ok {
			if err := rs.emit(journal.OpRemovexattr{Path: p, Name: name}, 0); err != nil {
				return err
			}
		}
	}
	return nil
}
