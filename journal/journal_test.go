package journal

import (
	"bufio"
	"bytes"
	"drfs/internal/logtest"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// MustOpenJournal opens a journal in dir (a new temp dir if "") and closes it
// at the end of the test.
func MustOpenJournal(tb testing.TB, dir string, opts Options) *Journal {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = logtest.Logger(tb)
	}
	j, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { j.Close() })
	return j
}

func mustAppend(tb testing.TB, j *Journal, typ RecordType, parts ...[]byte) Seq {
	tb.Helper()
	seq, err := j.Append(typ, parts...)
	if err != nil {
		tb.Fatalf("Append: %v", err)
	}
	return seq
}

// payloadFor is a deterministic payload of varying size for seq.
func payloadFor(seq Seq, max int) []byte {
	r := rand.New(rand.NewPCG(uint64(seq), 7))
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// readAll returns every readable record, payloads copied.
func readAll(tb testing.TB, j *Journal, from, to Seq) []Record {
	tb.Helper()
	var out []Record
	err := j.Read(from, to, func(r Record) error {
		out = append(out, Record{Seq: r.Seq, Type: r.Type, Payload: bytes.Clone(r.Payload)})
		return nil
	})
	if err != nil {
		tb.Fatalf("Read(%d, %d): %v", from, to, err)
	}
	return out
}

func checkRecords(tb testing.TB, recs []Record, from, to Seq, max int) {
	tb.Helper()
	if len(recs) != int(to-from+1) {
		tb.Fatalf("got %d records, want %d (%d..%d)", len(recs), to-from+1, from, to)
	}
	for i, r := range recs {
		want := from + Seq(i)
		if r.Seq != want {
			tb.Fatalf("record %d has seq %d, want %d", i, r.Seq, want)
		}
		if !bytes.Equal(r.Payload, payloadFor(want, max)) {
			tb.Fatalf("seq %d: payload mismatch", want)
		}
	}
}

func TestJournal_AppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{SegmentSize: 8 << 10, Logger: logtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if j.LastSeq() != 0 || j.FirstSeq() != 0 {
		t.Fatalf("new journal: last %d first %d", j.LastSeq(), j.FirstSeq())
	}
	const n = 500
	for i := 1; i <= n; i++ {
		p := payloadFor(Seq(i), 300)
		// Split the payload into parts to exercise concatenation.
		seq := mustAppend(t, j, RecWrite, p[:len(p)/3], p[len(p)/3:])
		if seq != Seq(i) {
			t.Fatalf("Append returned %d, want %d", seq, i)
		}
	}
	checkRecords(t, readAll(t, j, 1, n), 1, n, 300)
	checkRecords(t, readAll(t, j, 100, 200), 100, 200, 300)
	checkRecords(t, readAll(t, j, 450, 1<<40), 450, n, 300)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(RecWrite, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := j.Read(1, 2, func(Record) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}

	j = MustOpenJournal(t, dir, Options{SegmentSize: 8 << 10})
	if ri := j.Recovery(); ri.FirstSeq != 1 || ri.LastSeq != n || ri.TornBytes != 0 || ri.BrokenFile != "" {
		t.Fatalf("Recovery() = %+v", ri)
	}
	if j.LastSeq() != n || j.DurableSeq() != n || j.FirstSeq() != 1 {
		t.Fatalf("reopened: last %d durable %d first %d", j.LastSeq(), j.DurableSeq(), j.FirstSeq())
	}
	for i := n + 1; i <= n+50; i++ {
		if seq := mustAppend(t, j, RecHot, payloadFor(Seq(i), 300)); seq != Seq(i) {
			t.Fatalf("Append after reopen returned %d, want %d", seq, i)
		}
	}
	checkRecords(t, readAll(t, j, 1, n+50), 1, n+50, 300)
	if ents, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(ents) < 3 {
		t.Fatalf("expected rollover, got segments %v", ents)
	}
}

func TestJournal_ConcurrentAppend(t *testing.T) {
	j := MustOpenJournal(t, "", Options{SegmentSize: 64 << 10})
	const writers, per = 16, 400
	var (
		mu   sync.Mutex
		seen = map[Seq][]byte{}
		wg   sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				p := []byte(fmt.Sprintf("w%02d-i%04d-%s", w, i, strings.Repeat("x", (w*i)%200)))
				seq, err := j.Append(RecWrite, p)
				if err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					if err := j.Sync(seq); err != nil {
						t.Error(err)
					}
				}
				mu.Lock()
				if _, dup := seen[seq]; dup {
					t.Errorf("seq %d returned twice", seq)
				}
				seen[seq] = p
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	const total = writers * per
	if j.LastSeq() != total || j.PublishedSeq() != total {
		t.Fatalf("last %d published %d, want %d", j.LastSeq(), j.PublishedSeq(), total)
	}
	next := Seq(1)
	err := j.Read(1, total, func(r Record) error {
		if r.Seq != next {
			return fmt.Errorf("got seq %d, want %d", r.Seq, next)
		}
		if !bytes.Equal(r.Payload, seen[r.Seq]) {
			return fmt.Errorf("seq %d: payload %q, want %q", r.Seq, r.Payload, seen[r.Seq])
		}
		next++
		return nil
	})
	if err != nil || next != total+1 {
		t.Fatalf("Read: %v (stopped at %d)", err, next)
	}
}

func TestJournal_Rollover(t *testing.T) {
	dir := t.TempDir()
	const segSize = 4096
	j := MustOpenJournal(t, dir, Options{SegmentSize: segSize})
	// Fill several segments, then a record larger than a segment.
	for i := 1; i <= 100; i++ {
		mustAppend(t, j, RecWrite, payloadFor(Seq(i), 500))
	}
	big := bytes.Repeat([]byte{0xab}, 3*segSize)
	seq := mustAppend(t, j, RecWrite, big)
	after := mustAppend(t, j, RecWrite, []byte("after"))
	if err := j.Sync(after); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := j.Read(seq, seq, func(r Record) error { got = bytes.Clone(r.Payload); return nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("big record: got %d bytes", len(got))
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	var sum int64
	for _, s := range segs {
		st, err := os.Stat(s)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > segSize {
			if !strings.HasSuffix(s, segName(seq)) {
				t.Errorf("oversized segment %s (%d bytes)", s, st.Size())
			}
		}
		sum += st.Size()
	}
	if j.Size() != sum {
		t.Fatalf("Size() = %d, files sum to %d", j.Size(), sum)
	}
	j.Close()
	j2 := MustOpenJournal(t, dir, Options{SegmentSize: segSize})
	if j2.LastSeq() != after {
		t.Fatalf("reopened LastSeq %d, want %d", j2.LastSeq(), after)
	}
	checkRecords(t, readAll(t, j2, 1, 100), 1, 100, 500)
}

func TestJournal_Release(t *testing.T) {
	dir := t.TempDir()
	j := MustOpenJournal(t, dir, Options{SegmentSize: 4096})
	for i := 1; i <= 200; i++ {
		mustAppend(t, j, RecWrite, payloadFor(Seq(i), 200))
	}
	before := j.Size()
	nsegs := func() int { s, _ := filepath.Glob(filepath.Join(dir, "*.seg")); return len(s) }
	n0 := nsegs()
	// Not durable yet: nothing may go.
	if err := j.Release(150); err != nil {
		t.Fatal(err)
	}
	if nsegs() != n0 {
		t.Fatalf("Release before Sync deleted segments")
	}
	if err := j.Sync(200); err != nil {
		t.Fatal(err)
	}
	if err := j.Release(150); err != nil {
		t.Fatal(err)
	}
	first := j.FirstSeq()
	if first <= 1 || first > 151 {
		t.Fatalf("FirstSeq after Release(150) = %d", first)
	}
	if nsegs() >= n0 || j.Size() >= before {
		t.Fatalf("Release kept everything: %d segments, size %d", nsegs(), j.Size())
	}
	checkRecords(t, readAll(t, j, first, 200), first, 200, 200)
	if err := j.Read(1, 10, func(Record) error { return nil }); !errors.Is(err, ErrReleased) {
		t.Fatalf("Read of released records: %v", err)
	}
	// Releasing everything keeps the active segment.
	if err := j.Release(1 << 40); err != nil {
		t.Fatal(err)
	}
	if nsegs() != 1 {
		t.Fatalf("%d segments after full release", nsegs())
	}
	last := mustAppend(t, j, RecWrite, []byte("x"))
	j.Close()
	j2 := MustOpenJournal(t, dir, Options{SegmentSize: 4096})
	if j2.LastSeq() != last {
		t.Fatalf("LastSeq after reopen %d, want %d", j2.LastSeq(), last)
	}
}

func TestJournal_Sync(t *testing.T) {
	j := MustOpenJournal(t, "", Options{})
	s1 := mustAppend(t, j, RecWrite, []byte("a"))
	if j.DurableSeq() >= s1 {
		t.Fatalf("durable before Sync")
	}
	if err := j.Sync(s1); err != nil {
		t.Fatal(err)
	}
	if j.DurableSeq() < s1 {
		t.Fatalf("DurableSeq %d after Sync(%d)", j.DurableSeq(), s1)
	}
	f0 := j.Stats().Fsyncs
	if err := j.Sync(s1); err != nil || j.Stats().Fsyncs != f0 {
		t.Fatalf("second Sync: err %v, fsyncs %d -> %d", err, f0, j.Stats().Fsyncs)
	}
	if err := j.Sync(1 << 40); err != nil { // beyond LastSeq: treated as LastSeq
		t.Fatal(err)
	}
}

func TestJournal_GroupCommit(t *testing.T) {
	j := MustOpenJournal(t, "", Options{})
	const n = 64
	seqs := make([]Seq, n)
	for i := range n {
		seqs[i] = mustAppend(t, j, RecWrite, []byte(strconv.Itoa(i)))
	}
	// Every record is published before any Sync starts, so the first fdatasync covers all
	// of them and the other Syncs share it, however the goroutines are scheduled.
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			err := j.Sync(seqs[i])
			if err == nil && j.DurableSeq() < seqs[i] {
				err = fmt.Errorf("Sync(%d) returned with DurableSeq %d", seqs[i], j.DurableSeq())
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	f := j.Stats().Fsyncs
	t.Logf("%d concurrent Syncs -> %d fdatasyncs", n, f)
	if f == 0 || f > 2 {
		t.Fatalf("%d Syncs caused %d fdatasyncs: no group commit", n, f)
	}
}

func TestJournal_Metrics(t *testing.T) {
	j := MustOpenJournal(t, "", Options{MetricLabels: prometheus.Labels{"volume": "v1"}})
	reg := prometheus.NewRegistry()
	if err := j.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	s := mustAppend(t, j, RecWrite, make([]byte, 100))
	if err := j.Sync(s); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if l := m.GetLabel(); len(l) != 1 || l[0].GetValue() != "v1" {
			t.Errorf("%s: labels %v", mf.GetName(), l)
		}
		switch {
		case m.GetCounter() != nil:
			got[mf.GetName()] = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			got[mf.GetName()] = m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			got[mf.GetName()] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	want := map[string]float64{
		"drfs_journal_fsync_duration_seconds": 1,
		"drfs_journal_records_appended_total": 1,
		"drfs_journal_bytes_appended_total":   120,
		"drfs_journal_fsyncs_total":           1,
		"drfs_journal_size_bytes":             float64(j.Size()),
		"drfs_journal_last_seq":               1,
		"drfs_journal_durable_seq":            1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestJournal_AppendErrors(t *testing.T) {
	j := MustOpenJournal(t, "", Options{})
	if _, err := j.Append(0, nil); !errors.Is(err, ErrBadRecordType) {
		t.Fatalf("Append type 0: %v", err)
	}
	if s := mustAppend(t, j, RecHot); s != 1 { // empty payload is fine
		t.Fatalf("seq %d", s)
	}
}

// TestJournal_ENOSPC fills a small tmpfs: Append must fail with ENOSPC and
// everything appended before must stay readable and reopenable.
func TestJournal_ENOSPC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestJournal_ENOSPC needs root to mount a small tmpfs (make test runs as root)")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	dir := filepath.Join(mnt, "j")
	j, err := Open(dir, Options{SegmentSize: 64 << 10, Logger: logtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var last Seq
	var aerr error
	for i := 1; i < 10000; i++ {
		s, err := j.Append(RecWrite, payloadFor(Seq(i), 1000))
		if err != nil {
			aerr = err
			break
		}
		last = s
	}
	if !errors.Is(aerr, unix.ENOSPC) {
		t.Fatalf("Append on a full disk: %v, want ENOSPC", aerr)
	}
	t.Logf("full after %d records: %v", last, aerr)
	if err := j.Sync(last); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, readAll(t, j, 1, last), 1, last, 1000)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2 := MustOpenJournal(t, dir, Options{SegmentSize: 64 << 10})
	if j2.LastSeq() != last {
		t.Fatalf("reopened LastSeq %d, want %d", j2.LastSeq(), last)
	}
}

const childEnv = "DRFS_JOURNAL_KILL_CHILD"

// TestJournal_Kill9 appends from a child process that prints every seq
// Append returned, kills it with SIGKILL, and checks every printed seq is
// present with its payload after recovery.
func TestJournal_Kill9(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		killChild(dir)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		dir := t.TempDir()
		cmd := exec.Command(exe, "-test.run=^TestJournal_Kill9$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[Seq]string{}
		sc := bufio.NewScanner(out)
		deadline := time.After(time.Duration(200+100*round) * time.Millisecond)
		lines := make(chan string)
		go func() {
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
	collect:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break collect
				}
				addAck(t, acked, l)
			case <-deadline:
				cmd.Process.Signal(syscall.SIGKILL)
				for l := range lines {
					addAck(t, acked, l)
				}
				break collect
			}
		}
		cmd.Wait()
		if len(acked) == 0 {
			t.Fatal("child acknowledged nothing")
		}
		j, err := Open(dir, Options{SegmentSize: 32 << 10, Logger: logtest.Logger(t)})
		if err != nil {
			t.Fatalf("Open after kill -9: %v", err)
		}
		got := map[Seq]string{}
		if err := j.Read(1, j.LastSeq(), func(r Record) error { got[r.Seq] = string(r.Payload); return nil }); err != nil {
			t.Fatal(err)
		}
		for seq, p := range acked {
			if got[seq] != p {
				t.Fatalf("acked seq %d: got %q, want %q", seq, got[seq], p)
			}
		}
		t.Logf("round %d: %d acked, %d recovered, recovery %+v", round, len(acked), len(got), j.Recovery())
		j.Close()
	}
}

func addAck(t *testing.T, acked map[Seq]string, line string) {
	seqS, p, ok := strings.Cut(line, " ")
	if !ok {
		return // a line cut by the kill
	}
	seq, err := strconv.ParseUint(seqS, 10, 64)
	if err != nil {
		t.Fatalf("child line %q", line)
	}
	acked[Seq(seq)] = p
}

func killChild(dir string) {
	j, err := Open(dir, Options{SegmentSize: 32 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				p := fmt.Sprintf("g%d-%d-%s", g, i, strings.Repeat("z", i%300))
				seq, err := j.Append(RecWrite, []byte(p))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(w, "%d %s\n", seq, p)
				w.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func BenchmarkAppend4K(b *testing.B) {
	j := MustOpenJournal(b, "", Options{})
	data := make([]byte, 4096)
	hdr := AppendWriteHeader(nil, "images/vm1.qcow2", 12, 1<<30)
	b.SetBytes(int64(len(hdr) + len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := j.Append(RecWrite, hdr, data); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkAppend4KSerial(b *testing.B) {
	j := MustOpenJournal(b, "", Options{})
	data := make([]byte, 4096)
	hdr := AppendWriteHeader(nil, "images/vm1.qcow2", 12, 1<<30)
	b.SetBytes(int64(len(hdr) + len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := j.Append(RecWrite, hdr, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendSync4K(b *testing.B) {
	j := MustOpenJournal(b, "", Options{})
	data := make([]byte, 4096)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s, err := j.Append(RecWrite, data)
			if err == nil {
				err = j.Sync(s)
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(j.Stats().Fsyncs)/float64(b.N), "fsyncs/op")
}

func TestJournal_FirstSeq(t *testing.T) {
	dir := t.TempDir()
	j := MustOpenJournal(t, dir, Options{FirstSeq: 1000, SegmentSize: 4096})
	if j.LastSeq() != 999 {
		t.Fatalf("LastSeq = %d, want 999", j.LastSeq())
	}
	if seq := mustAppend(t, j, RecWrite, []byte("x")); seq != 1000 {
		t.Fatalf("first seq %d, want 1000", seq)
	}
	j.Close()
	j = MustOpenJournal(t, dir, Options{FirstSeq: 5})
	if j.LastSeq() != 1000 || j.FirstSeq() != 1000 {
		t.Fatalf("reopened: first %d last %d", j.FirstSeq(), j.LastSeq())
	}
}
