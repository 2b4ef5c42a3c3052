package changelog

import (
	"container/heap"
	"math"
	"slices"

	"drfs/journal"
)

// Coalesce returns ops equivalent to ops applied in order, with each run of
// OpWrite (consecutive, not separated by any other op) merged per file:
// where byte ranges overlap the later write's data wins, adjacent ranges
// merge into one write, and no write is longer than MaxMergedWrite (longer
// extents are split). In the output, the writes of a run are ordered by the
// first appearance of their file in the run, then by offset; zero-length
// writes are dropped.
//
// Every other op is a barrier kept in place and in order (renames, unlinks,
// links, truncates, fallocates, setattrs, ...): merging never moves data
// across it. OpHot ops are dropped: they are local to the primary and do
// not end a run. Writes with a negative offset or an end past MaxInt64
// can't be merged and are kept as barriers.
//
// A file is known by its path and, where OpWrite.Ino is non-zero, its inode:
// writes to two hard links of one inode within a run merge as one file
// (named by the first path seen), so their relative order is kept. Writes
// through two links with Ino 0 can't be recognised as one file.
//
// All data is copied: the result never aliases the inputs.
func Coalesce(ops []journal.Op) []journal.Op {
	out := make([]journal.Op, 0, len(ops))
	var run []journal.OpWrite
	flush := func() {
		out = appendRun(out, run)
		run = run[:0]
	}
	for _, op := range ops {
		switch o := op.(type) {
		case journal.OpHot:
		case journal.OpWrite:
			if o.Off < 0 || int64(len(o.Data)) > math.MaxInt64-o.Off {
				flush()
				o.Data = slices.Clone(o.Data)
				out = append(out, o)
				continue
			}
			run = append(run, o)
		default:
			flush()
			out = append(out, copyOp(op))
		}
	}
	flush()
	return out
}

// copyOp returns op with its byte slices copied.
func copyOp(op journal.Op) journal.Op {
	switch o := op.(type) {
	case journal.OpSetxattr:
		o.Value = slices.Clone(o.Value)
		return o
	case journal.OpWrite:
		o.Data = slices.Clone(o.Data)
		return o
	}
	return op
}

// fileGroup is one file's writes within a run.
type fileGroup struct {
	parent int // union-find parent (index into groups); itself for a root
	path   string
	ino    uint64
	writes []int // indices into the run, ascending
}

// appendRun appends the merged writes of run to out.
func appendRun(out []journal.Op, run []journal.OpWrite) []journal.Op {
	switch len(run) {
	case 0:
		return out
	case 1:
		return appendExtent(out, run[0].Path, run[0].Ino, run[0].Off, []piece{{src: run[0].Data}})
	}
	var groups []fileGroup
	byPath := make(map[string]int)
	byIno := make(map[uint64]int)
	find := func(g int) int {
		for groups[g].parent != g {
			groups[g].parent = groups[groups[g].parent].parent
			g = groups[g].parent
		}
		return g
	}
	for i, w := range run {
		if len(w.Data) == 0 {
			continue
		}
		g, okp := byPath[w.Path]
		if okp {
			g = find(g)
		}
		if w.Ino != 0 {
			if gi, oki := byIno[w.Ino]; oki {
				gi = find(gi)
				switch {
				case !okp:
					g, okp = gi, true
				case gi != g:
					// Two paths of one inode: union into the earlier group.
					lo, hi := min(g, gi), max(g, gi)
					groups[hi].parent = lo
					groups[lo].writes = mergeSorted(groups[lo].writes, groups[hi].writes)
					groups[hi].writes = nil
					g = lo
				}
			}
		}
		if !okp {
			g = len(groups)
			groups = append(groups, fileGroup{parent: g, path: w.Path, ino: w.Ino})
		}
		byPath[w.Path] = g
		if w.Ino != 0 {
			byIno[w.Ino] = g
			if groups[g].ino == 0 {
				groups[g].ino = w.Ino
			}
		}
		groups[g].writes = append(groups[g].writes, i)
	}
	for i := range groups {
		if groups[i].parent == i {
			out = appendGroup(out, run, &groups[i])
		}
	}
	return out
}

func mergeSorted(a, b []int) []int {
	out := make([]int, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0] < b[0] {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// piece is a byte range of one input write that survives.
type piece struct{ src []byte }

// appendGroup resolves the overlapping writes of one file and appends the
// resulting extents. It sweeps the write boundaries in offset order with a
// heap of the writes covering the current point; the latest one (highest
// run index) owns each elementary range.
func appendGroup(out []journal.Op, run []journal.OpWrite, g *fileGroup) []journal.Op {
	ws := g.writes
	if len(ws) == 1 {
		w := run[ws[0]]
		return appendExtent(out, g.path, g.ino, w.Off, []piece{{src: w.Data}})
	}
	byOff := slices.Clone(ws)
	slices.SortStableFunc(byOff, func(a, b int) int {
		switch oa, ob := run[a].Off, run[b].Off; {
		case oa < ob:
			return -1
		case oa > ob:
			return 1
		}
		return 0
	})
	points := make([]int64, 0, 2*len(ws))
	for _, i := range ws {
		points = append(points, run[i].Off, run[i].Off+int64(len(run[i].Data)))
	}
	slices.Sort(points)
	points = slices.Compact(points)

	h := &activeHeap{run: run}
	var (
		next      int     // into byOff
		extOff    int64   // start of the extent being built
		extPieces []piece // its pieces, contiguous
		extEnd    int64   = -1
	)
	for k := 0; k+1 < len(points); k++ {
		p, q := points[k], points[k+1]
		for next < len(byOff) && run[byOff[next]].Off <= p {
			heap.Push(h, byOff[next])
			next++
		}
		for h.Len() > 0 && run[h.idx[0]].Off+int64(len(run[h.idx[0]].Data)) <= p {
			heap.Pop(h)
		}
		if h.Len() == 0 {
			continue // a hole between writes
		}
		w := run[h.idx[0]]
		src := w.Data[p-w.Off : q-w.Off]
		if p != extEnd {
			if len(extPieces) > 0 {
				out = appendExtent(out, g.path, g.ino, extOff, extPieces)
			}
			extOff, extPieces = p, extPieces[:0]
		}
		// Consecutive ranges from the same write are one piece.
		if n := len(extPieces); n > 0 && lastIs(extPieces[n-1].src, w.Data, p-w.Off) {
			extPieces[n-1].src = extPieces[n-1].src[:len(extPieces[n-1].src)+len(src)]
		} else {
			extPieces = append(extPieces, piece{src: src})
		}
		extEnd = q
	}
	if len(extPieces) > 0 {
		out = appendExtent(out, g.path, g.ino, extOff, extPieces)
	}
	return out
}

// lastIs reports whether prev is the slice of data ending at offset end,
// so the next range of data can extend it in place.
func lastIs(prev, data []byte, end int64) bool {
	if len(prev) == 0 || end < int64(len(prev)) {
		return false
	}
	return &data[end-int64(len(prev))] == &prev[0]
}

// appendExtent copies the contiguous pieces starting at off into fresh
// writes of at most MaxMergedWrite bytes.
func appendExtent(out []journal.Op, path string, ino uint64, off int64, pieces []piece) []journal.Op {
	var total int64
	for _, p := range pieces {
		total += int64(len(p.src))
	}
	for total > 0 {
		n := min(total, MaxMergedWrite)
		buf := make([]byte, 0, n)
		for int64(len(buf)) < n {
			src := pieces[0].src
			take := min(int64(len(src)), n-int64(len(buf)))
			buf = append(buf, src[:take]...)
			if take == int64(len(src)) {
				pieces = pieces[1:]
			} else {
				pieces[0].src = src[take:]
			}
		}
		out = append(out, journal.OpWrite{Path: path, Ino: ino, Off: off, Data: buf})
		off += n
		total -= n
	}
	return out
}

// activeHeap is a max-heap of run indices: the latest write on top.
type activeHeap struct {
	run []journal.OpWrite
	idx []int
}

func (h *activeHeap) Len() int           { return len(h.idx) }
func (h *activeHeap) Less(i, j int) bool { return h.idx[i] > h.idx[j] }
func (h *activeHeap) Swap(i, j int)      { h.idx[i], h.idx[j] = h.idx[j], h.idx[i] }
func (h *activeHeap) Push(x any)         { h.idx = append(h.idx, x.(int)) }
func (h *activeHeap) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}
