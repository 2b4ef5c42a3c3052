package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Crash replay must never act outside the source, whatever the guest did to the namespace
// after the records were written (invariant 6), and must be idempotent for every op type: a
// volume always comes back up after kill -9, with exactly the tree the guest saw.

// treeEntry is what a guest can observe of one path.
type treeEntry struct {
	Kind   string // "f", "d", "l", "p" (fifo)
	Mode   uint32 // permission bits
	Size   int64
	Hash   string // regular files: sha256 of the content
	Target string // symlinks
	Xattrs string // user.* xattrs, sorted, "name=value;"
	Links  uint64 // regular files: link count
}

// snapshotTree walks root (without following symlinks) and describes every entry.
func observeTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := treeEntry{Mode: st.Mode & 07777}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.Kind, e.Size, e.Links = "f", st.Size, uint64(st.Nlink)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			e.Hash = hex.EncodeToString(h[:8])
		case unix.S_IFDIR:
			e.Kind = "d"
		case unix.S_IFLNK:
			e.Kind, e.Mode = "l", 0
			e.Target, _ = os.Readlink(p)
		case unix.S_IFIFO:
			e.Kind = "p"
		default:
			e.Kind = fmt.Sprintf("mode-%o", st.Mode&unix.S_IFMT)
		}
		if e.Kind != "l" {
			e.Xattrs = xattrString(p)
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

// xattrString renders p's user.* xattrs sorted, as "name=value;" pairs.
func xattrString(p string) string {
	xs := userXattrs(p)
	names := make([]string, 0, len(xs))
	for n := range xs {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	for _, n := range names {
		fmt.Fprintf(&sb, "%s=%q;", n, xs[n])
	}
	return sb.String()
}

// diffTrees returns a readable list of differences (empty when equal).
func diffTrees(want, got map[string]treeEntry) []string {
	var d []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("%s: missing (want %+v)", p, w))
		case g != w:
			d = append(d, fmt.Sprintf("%s: got %+v, want %+v", p, g, w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			d = append(d, fmt.Sprintf("%s: unexpected %+v", p, g))
		}
	}
	sort.Strings(d)
	return d
}

// outsideDir is a directory outside every volume that a guest points symlinks at; it must stay
// empty whatever drfs replays.
func outsideDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(scratchDir(t, "drfs-outside-"), "victim")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func requireEmptyDir(t *testing.T, d string) {
	t.Helper()
	ents, err := os.ReadDir(d)
	if err != nil {
		t.Fatalf("read %s: %v", d, err)
	}
	if len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("crash replay wrote outside the volume: %s now holds %v", d, names)
	}
}

func writeFsync(t *testing.T, p string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReplay_SymlinkSwapStaysInside: a file is created and fsynced in d, d is renamed and a
// symlink to a directory outside the volume takes its name; the daemon dies before any
// checkpoint. Replay must not create anything through the symlink.
func TestReplay_SymlinkSwapStaysInside(t *testing.T) {
	requireTools(t)
	victim := outsideDir(t)
	m := testMountWith(t, MountOptions{Args: []string{"--checkpoint-interval", "1h"}})
	mnt := m.Mnt
	mustOK(t, os.Mkdir(filepath.Join(mnt, "d"), 0o755))
	writeFsync(t, filepath.Join(mnt, "d", "f.sh"), []byte("#!/bin/sh\necho planted\n"))
	// A hard link in the same directory, and one into it from outside.
	writeFsync(t, filepath.Join(mnt, "a"), []byte("linked content"))
	mustOK(t, os.Link(filepath.Join(mnt, "a"), filepath.Join(mnt, "d", "h")))
	mustOK(t, os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")))
	mustOK(t, os.Symlink(victim, filepath.Join(mnt, "d")))
	syncMount(t, mnt)
	want := observeTree(t, mnt)
	m.Kill()
	m.Remount()
	requireEmptyDir(t, victim)
	if d := diffTrees(want, observeTree(t, mnt)); len(d) > 0 {
		t.Fatalf("tree after replay differs from the tree before the crash:\n%s", strings.Join(d, "\n"))
	}
}

// syncMount fsyncs the mount's root directory: one journal sync for everything so far.
func syncMount(t *testing.T, mnt string) {
	t.Helper()
	f, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", mnt, err)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestReplay_EveryOpTypeAfterKill runs each op type through the mount, kills the daemon before a
// checkpoint and requires that the volume mounts again with exactly the tree the guest saw.
func TestReplay_EveryOpTypeAfterKill(t *testing.T) {
	requireTools(t)
	blk := bytes.Repeat([]byte("0123456789abcdef"), 4096/16)
	data := func(n int, c byte) []byte {
		b := bytes.Repeat(blk, n)
		for i := 0; i < len(b); i += 4096 {
			b[i] = c
		}
		return b
	}
	ops := []struct {
		name string
		do   func(t *testing.T, mnt string)
	}{
		{"setxattr-create", func(t *testing.T, mnt string) {
			mustOK(t, unix.Setxattr(filepath.Join(mnt, "f"), "user.a", []byte("1"), unix.XATTR_CREATE))
		}},
		{"setxattr-replace", func(t *testing.T, mnt string) {
			mustOK(t, unix.Setxattr(filepath.Join(mnt, "f"), "user.pre", []byte("2"), unix.XATTR_REPLACE))
		}},
		{"removexattr", func(t *testing.T, mnt string) {
			mustOK(t, unix.Removexattr(filepath.Join(mnt, "f"), "user.pre"))
		}},
		{"removexattr-then-create", func(t *testing.T, mnt string) {
			mustOK(t, unix.Removexattr(filepath.Join(mnt, "f"), "user.pre"))
			mustOK(t, unix.Setxattr(filepath.Join(mnt, "f"), "user.pre", []byte("3"), unix.XATTR_CREATE))
		}},
		{"rename-noreplace", func(t *testing.T, mnt string) {
			mustOK(t, unix.Renameat2(unix.AT_FDCWD, filepath.Join(mnt, "f"), unix.AT_FDCWD, filepath.Join(mnt, "n"), unix.RENAME_NOREPLACE))
		}},
		{"rename-exchange", func(t *testing.T, mnt string) {
			mustOK(t, unix.Renameat2(unix.AT_FDCWD, filepath.Join(mnt, "f"), unix.AT_FDCWD, filepath.Join(mnt, "g"), unix.RENAME_EXCHANGE))
		}},
		{"rename-replace-then-recreate", func(t *testing.T, mnt string) {
			mustOK(t, os.Rename(filepath.Join(mnt, "f"), filepath.Join(mnt, "g")))
			writeFsync(t, filepath.Join(mnt, "f"), data(2, 'N'))
		}},
		{"rename-dir-and-back", func(t *testing.T, mnt string) {
			mustOK(t, os.Rename(filepath.Join(mnt, "dir"), filepath.Join(mnt, "dir2")))
			mustOK(t, os.Mkdir(filepath.Join(mnt, "dir"), 0o700))
			mustOK(t, os.Rename(filepath.Join(mnt, "dir2", "inner"), filepath.Join(mnt, "dir", "inner")))
		}},
		{"link-unlink-original", func(t *testing.T, mnt string) {
			mustOK(t, os.Link(filepath.Join(mnt, "f"), filepath.Join(mnt, "dir", "l")))
			mustOK(t, os.Remove(filepath.Join(mnt, "f")))
		}},
		{"unlink-recreate", func(t *testing.T, mnt string) {
			mustOK(t, os.Remove(filepath.Join(mnt, "f")))
			writeFsync(t, filepath.Join(mnt, "f"), data(1, 'R'))
		}},
		{"rmdir-recreate-as-file", func(t *testing.T, mnt string) {
			mustOK(t, os.Remove(filepath.Join(mnt, "dir", "inner")))
			mustOK(t, os.Remove(filepath.Join(mnt, "dir")))
			writeFsync(t, filepath.Join(mnt, "dir"), data(1, 'D'))
		}},
		{"truncate-shrink-grow", func(t *testing.T, mnt string) {
			mustOK(t, os.Truncate(filepath.Join(mnt, "f"), 5000))
			mustOK(t, os.Truncate(filepath.Join(mnt, "f"), 40000))
		}},
		{"punch-zero", func(t *testing.T, mnt string) {
			fallocate(t, filepath.Join(mnt, "f"), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 8192)
			fallocate(t, filepath.Join(mnt, "f"), unix.FALLOC_FL_ZERO_RANGE, 16384, 4096)
		}},
		{"collapse-insert-refused", func(t *testing.T, mnt string) {
			// They shift data, so replaying one twice would corrupt the file: the mount
			// refuses them (the kernel's FUSE client does too) and nothing is journaled.
			for _, mode := range []uint32{unix.FALLOC_FL_COLLAPSE_RANGE, unix.FALLOC_FL_INSERT_RANGE} {
				f, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_RDWR, 0)
				mustOK(t, err)
				err = unix.Fallocate(int(f.Fd()), mode, 4096, 4096)
				f.Close()
				if err != unix.EOPNOTSUPP {
					t.Fatalf("fallocate mode %#x through the mount: %v, want EOPNOTSUPP", mode, err)
				}
			}
			fallocate(t, filepath.Join(mnt, "f"), 0, 100000, 8192) // plain preallocation
		}},
		{"chmod-utimes", func(t *testing.T, mnt string) {
			mustOK(t, os.Chmod(filepath.Join(mnt, "f"), 0o600))
			mustOK(t, os.Chmod(filepath.Join(mnt, "dir"), 0o711))
		}},
		{"mkfifo-symlink", func(t *testing.T, mnt string) {
			mustOK(t, unix.Mkfifo(filepath.Join(mnt, "dir", "fifo"), 0o640))
			mustOK(t, os.Symlink("../f", filepath.Join(mnt, "dir", "sl")))
		}},
		{"symlink-replaces-dir", func(t *testing.T, mnt string) {
			mustOK(t, os.Rename(filepath.Join(mnt, "dir"), filepath.Join(mnt, "moved")))
			mustOK(t, os.Symlink("/", filepath.Join(mnt, "dir")))
		}},
	}
	for _, tc := range ops {
		t.Run(tc.name, func(t *testing.T) {
			m := testMountWith(t, MountOptions{Args: []string{"--checkpoint-interval", "1h"}})
			mnt := m.Mnt
			// Checkpointed base state: f, g with xattrs, dir/inner.
			writeFsync(t, filepath.Join(mnt, "f"), data(12, 'f'))
			writeFsync(t, filepath.Join(mnt, "g"), data(3, 'g'))
			mustOK(t, unix.Setxattr(filepath.Join(mnt, "f"), "user.pre", []byte("0"), 0))
			mustOK(t, os.MkdirAll(filepath.Join(mnt, "dir", "inner"), 0o755))
			m.Stop()
			m.Remount()
			tc.do(t, mnt)
			syncMount(t, mnt)
			want := observeTree(t, mnt)
			m.Kill()
			if err := m.TryRemount(); err != nil {
				t.Fatalf("the volume does not mount after kill -9: %v", err)
			}
			if d := diffTrees(want, observeTree(t, mnt)); len(d) > 0 {
				t.Fatalf("tree after replay differs from the tree before the crash:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func fallocate(t *testing.T, p string, mode uint32, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), mode, off, n); err != nil {
		t.Fatalf("fallocate %s mode %#x [%d,+%d): %v", p, mode, off, n, err)
	}
}

// TestReplay_Model runs random sequences of namespace, data and attribute ops through the
// mount, kills the daemon at a random point, and requires that the remounted tree is the tree
// the guest saw when the daemon died; then it replays the same journal a second time over the
// replayed source and requires the same tree again. Symlinks to a directory outside the volume
// appear among the ops; nothing may ever be written there.
func TestReplay_Model(t *testing.T) {
	requireTools(t)
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	for r := range rounds {
		seed := uint64(r*7919 + 17)
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			victim := outsideDir(t)
			m := testMountWith(t, MountOptions{Args: []string{"--checkpoint-interval", "1h"}})
			rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
			g := &opGen{t: t, rng: rng, mnt: m.Mnt, victim: victim}
			nops := 40 + rng.IntN(160)
			ckAt := rng.IntN(nops) // a clean stop (checkpoint) somewhere in the run
			for i := range nops {
				if i == ckAt {
					m.Stop()
					m.Remount()
				}
				g.step()
			}
			want := observeTree(t, m.Mnt)
			m.Kill()
			saved := filepath.Join(m.Logs, "state-at-crash")
			if out, err := exec.Command("cp", "-a", m.State, saved).CombinedOutput(); err != nil {
				t.Fatalf("copy state: %v\n%s", err, out)
			}
			if err := m.TryRemount(); err != nil {
				t.Fatalf("ops %v: the volume does not mount after kill -9: %v", g.log, err)
			}
			requireEmptyDir(t, victim)
			if d := diffTrees(want, observeTree(t, m.Mnt)); len(d) > 0 {
				t.Fatalf("ops %v:\ntree after replay differs from the tree before the crash:\n%s", g.log, strings.Join(d, "\n"))
			}
			// Replay the same journal again over the replayed source.
			m.Stop()
			mustOK(t, os.RemoveAll(m.State))
			if out, err := exec.Command("cp", "-a", saved, m.State).CombinedOutput(); err != nil {
				t.Fatalf("restore state: %v\n%s", err, out)
			}
			if err := m.TryRemount(); err != nil {
				t.Fatalf("ops %v: second replay does not mount: %v", g.log, err)
			}
			requireEmptyDir(t, victim)
			if d := diffTrees(want, observeTree(t, m.Mnt)); len(d) > 0 {
				t.Fatalf("ops %v:\ntree after the second replay differs:\n%s", g.log, strings.Join(d, "\n"))
			}
		})
	}
}

// opGen issues random ops in a small namespace so that they collide often.
type opGen struct {
	t      *testing.T
	rng    *rand.Rand
	mnt    string
	victim string
	log    []string
}

var (
	genDirs  = []string{"", "a", "b", "a/c"}
	genNames = []string{"x", "y", "z", "a", "b"}
)

func (g *opGen) path() string {
	d := genDirs[g.rng.IntN(len(genDirs))]
	return filepath.Join(d, genNames[g.rng.IntN(len(genNames))])
}

func (g *opGen) abs(p string) string { return filepath.Join(g.mnt, p) }

// safe reports whether no directory on the way to p is a symlink.
func (g *opGen) safe(p string) bool {
	for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
		if fi, err := os.Lstat(g.abs(d)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return false
		}
	}
	return true
}

func (g *opGen) note(format string, args ...any) {
	g.log = append(g.log, fmt.Sprintf(format, args...))
}

func (g *opGen) step() {
	r := g.rng
	p, q := g.path(), g.path()
	if !g.safe(p) || !g.safe(q) {
		return // the guest itself would follow a symlink out of the mount
	}
	var err error
	switch k := r.IntN(16); k {
	case 0:
		err = os.Mkdir(g.abs(p), 0o755)
		g.note("mkdir %s: %v", p, err)
	case 1, 2, 3:
		off := int64(r.IntN(64)) * 4096
		n := 1 + r.IntN(4*4096)
		var f *os.File
		f, err = os.OpenFile(g.abs(p), os.O_CREATE|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
		if err == nil {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			_, err = f.WriteAt(b, off)
			if r.IntN(2) == 0 {
				f.Sync()
			}
			f.Close()
		}
		g.note("write %s @%d+%d: %v", p, off, n, err)
	case 4:
		flags := []uint{0, unix.RENAME_NOREPLACE, unix.RENAME_EXCHANGE}[r.IntN(3)]
		err = unix.Renameat2(unix.AT_FDCWD, g.abs(p), unix.AT_FDCWD, g.abs(q), flags)
		g.note("rename %s %s %d: %v", p, q, flags, err)
	case 5:
		err = os.Link(g.abs(p), g.abs(q))
		g.note("link %s %s: %v", p, q, err)
	case 6:
		err = os.Remove(g.abs(p))
		g.note("remove %s: %v", p, err)
	case 7:
		target := g.victim
		if r.IntN(3) == 0 {
			target = "../" + genNames[r.IntN(len(genNames))]
		}
		err = os.Symlink(target, g.abs(p))
		g.note("symlink %s -> %s: %v", p, target, err)
	case 8:
		sz := int64(r.IntN(80 * 4096))
		if fi, err := os.Lstat(g.abs(p)); err == nil && fi.Mode().IsRegular() {
			err = unix.Truncate(g.abs(p), sz)
			g.note("truncate %s %d: %v", p, sz, err)
		}
	case 9, 10:
		modes := []uint32{unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_ZERO_RANGE,
			unix.FALLOC_FL_COLLAPSE_RANGE, unix.FALLOC_FL_INSERT_RANGE, 0}
		mode := modes[r.IntN(len(modes))]
		off, n := int64(r.IntN(16))*4096, int64(1+r.IntN(4))*4096
		var fd int
		fd, err = unix.Open(g.abs(p), unix.O_RDWR|unix.O_NOFOLLOW, 0)
		if err == nil {
			err = unix.Fallocate(fd, mode, off, n)
			unix.Close(fd)
		}
		g.note("fallocate %s %#x @%d+%d: %v", p, mode, off, n, err)
	case 11:
		flags := []int{0, unix.XATTR_CREATE, unix.XATTR_REPLACE}[r.IntN(3)]
		name := []string{"user.a", "user.b"}[r.IntN(2)]
		val := fmt.Sprintf("v%d", r.IntN(100))
		err = unix.Lsetxattr(g.abs(p), name, []byte(val), flags)
		g.note("setxattr %s %s=%s %d: %v", p, name, val, flags, err)
	case 12:
		name := []string{"user.a", "user.b"}[r.IntN(2)]
		err = unix.Lremovexattr(g.abs(p), name)
		g.note("removexattr %s %s: %v", p, name, err)
	case 13:
		mode := os.FileMode([]uint32{0o600, 0o644, 0o755, 0o700}[r.IntN(4)])
		var fi os.FileInfo
		if fi, err = os.Lstat(g.abs(p)); err == nil && fi.Mode()&os.ModeSymlink == 0 {
			err = os.Chmod(g.abs(p), mode)
			g.note("chmod %s %o: %v", p, mode, err)
		}
	case 14:
		// The attack: rename a directory away and put a symlink to the outside in its place.
		d := genDirs[1+r.IntN(len(genDirs)-1)]
		err = os.Rename(g.abs(d), g.abs(d+".old"))
		if err == nil {
			err = os.Symlink(g.victim, g.abs(d))
		}
		g.note("swap %s for a symlink: %v", d, err)
	case 15:
		d := genDirs[1+r.IntN(len(genDirs)-1)] + ".old"
		if g.safe(d) {
			err = os.RemoveAll(g.abs(d))
			g.note("rm -r %s: %v", d, err)
		}
	}
	if r.IntN(8) == 0 {
		syncMount(g.t, g.mnt)
	}
}

// TestDirFsync_SyncsJournal: fsync of a directory through the mount must make the journal
// durable, like fsync of a file (the O_TMPFILE, linkat, fsync(dir) pattern relies on it).
func TestDirFsync_SyncsJournal(t *testing.T) {
	requireTools(t)
	m := testMountWith(t, MountOptions{Args: []string{"--checkpoint-interval", "1h"}})
	f, err := os.OpenFile(filepath.Join(m.Mnt, "f"), os.O_CREATE|os.O_RDWR, 0o644)
	mustOK(t, err)
	defer f.Close()
	_, err = f.WriteAt([]byte("first"), 0)
	mustOK(t, err)
	mustOK(t, f.Sync())
	// The region is hot now: this write appends a record without syncing the journal.
	_, err = f.WriteAt([]byte("second"), 100)
	mustOK(t, err)
	if st := m.Status(); st.DurableSeq >= *st.JournalSeq {
		t.Fatalf("durable seq %d already covers journal seq %d before any fsync: the test cannot tell", st.DurableSeq, *st.JournalSeq)
	}
	syncMount(t, m.Mnt)
	if st := m.Status(); st.DurableSeq < *st.JournalSeq {
		t.Fatalf("after fsync of the mount's directory the journal is durable to seq %d of %d", st.DurableSeq, *st.JournalSeq)
	}
}

// TestReplay_UnreplayableNeedsOperator: a record that cannot be replayed into an existing file
// (here the file was made immutable while drfs was down) stops the mount with a message naming
// it and the way out; --skip-unreplayable starts the volume and marks the file for resync.
func TestReplay_UnreplayableNeedsOperator(t *testing.T) {
	requireTools(t, "chattr")
	m := testMountWith(t, MountOptions{Args: []string{"--checkpoint-interval", "1h"}})
	writeFsync(t, filepath.Join(m.Mnt, "f"), []byte("acknowledged"))
	m.Kill()
	src := filepath.Join(m.Src, "f")
	mustRun(t, time.Minute, "chattr", "+i", src)
	t.Cleanup(func() { run(t, time.Minute, "chattr", "-i", src) })
	err := m.TryRemount()
	if err == nil {
		t.Fatal("the volume mounted although a journal record could not be replayed")
	}
	for _, want := range []string{"could not be replayed", "f", "--skip-unreplayable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("mount error lacks %q:\n%v", want, err)
		}
	}
	m.Args = append(m.Args, "--skip-unreplayable")
	if err := m.TryRemount(); err != nil {
		t.Fatalf("mount with --skip-unreplayable: %v", err)
	}
	if st := m.Status(); !coversResync(st.Resync, "f", 0, 1) {
		t.Errorf("f is not marked for resync after its record was skipped: %s", st.raw)
	}
}
