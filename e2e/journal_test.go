package e2e

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestJournal_SeesEveryWrite writes 1000 distinct 4 KiB blocks with pwrite
// and a burst of O_DIRECT writes, then checks that `drfs journal dump` has a
// write record covering every one: the daemon saw every write, so kernel
// passthrough is off.
func TestJournal_SeesEveryWrite(t *testing.T) {
	requireTools(t)
	m := testMount(t)
	type w struct {
		path string
		off  int64
	}
	var written []w

	f, err := os.OpenFile(filepath.Join(m.Mnt, "disk.img"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for i := 0; i < 1000; i++ {
		off := int64(i) * 2 * 4096 // every other block
		buf[0], buf[1] = byte(i), byte(i>>8)
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatalf("pwrite %d: %v", off, err)
		}
		written = append(written, w{"disk.img", off})
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	fd, err := unix.Open(filepath.Join(m.Mnt, "direct.img"), unix.O_RDWR|unix.O_CREAT|unix.O_DIRECT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatalf("open O_DIRECT: %v", err)
	}
	abuf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(abuf)
	for i := 0; i < 64; i++ {
		off := int64(i) * 3 * 4096
		abuf[0] = byte(i)
		if _, err := unix.Pwrite(fd, abuf, off); err != nil {
			t.Fatalf("O_DIRECT pwrite %d: %v", off, err)
		}
		written = append(written, w{"direct.img", off})
	}
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
	m.Stop()

	recs := m.JournalDump()
	if len(recs) == 0 {
		t.Fatalf("drfs journal dump printed no records")
	}
	byPath := map[string][]Record{}
	types := map[string]int{}
	var prev uint64
	for i, r := range recs {
		types[r.Type]++
		if i > 0 && r.Seq <= prev {
			t.Errorf("journal dump: seq %d after %d (not increasing)", r.Seq, prev)
		}
		prev = r.Seq
		if r.Type == "write" {
			p := strings.TrimPrefix(r.Path, "/")
			byPath[p] = append(byPath[p], r)
		}
	}
	t.Logf("journal dump: %d records, by type %v", len(recs), types)
	for p := range byPath {
		rs := byPath[p]
		sort.Slice(rs, func(i, j int) bool { return rs[i].Off < rs[j].Off })
	}
	missing := 0
	for _, x := range written {
		rs := byPath[x.path]
		// first record with Off > x.off; candidates are before it.
		i := sort.Search(len(rs), func(i int) bool { return rs[i].Off > x.off })
		found := false
		for j := i - 1; j >= 0 && !found; j-- {
			if rs[j].Off <= x.off && x.off+4096 <= rs[j].Off+rs[j].Len {
				found = true
			}
			if x.off-rs[j].Off > 64<<20 {
				break
			}
		}
		if !found {
			missing++
			if missing <= 10 {
				t.Errorf("no write record covers %s [%d, %d)", x.path, x.off, x.off+4096)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d writes missing from the journal (kernel passthrough on, or writes not journaled); %d write records for disk.img, %d for direct.img",
			missing, len(written), len(byPath["disk.img"]), len(byPath["direct.img"]))
	}
	if types["create"] == 0 {
		t.Errorf("journal dump has no create record (created disk.img and direct.img)")
	}
}
