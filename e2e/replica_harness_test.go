package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// freeAddr returns a 127.0.0.1 address with a port nothing listens on (at
// the time of the call).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Replica is one running `drfs serve`.
type Replica struct {
	t       testing.TB
	Dir     string // replica directory (--dir)
	Addr    string // listen address
	Metrics string // metrics address
	Certs   string // --certs directory; "" means --insecure
	Logs    string
	Extra   []string // more drfs serve flags, used from the next Start
	// Config, when set, is the file drfs serve runs with (--config FILE, then Extra): the
	// test writes Dir, Addr and the rest into it.
	Config string
	Env    []string // more environment variables of drfs serve, e.g. NOTIFY_SOCKET=PATH

	proc
	starts int
}

// startReplica starts `drfs serve` on a fresh directory (dir "" ) or on dir,
// insecure unless certs is set, and registers cleanup.
func startReplica(t testing.TB, dir, certs string) *Replica {
	t.Helper()
	r := newReplica(t, dir, certs)
	r.Start()
	return r
}

// newReplica is startReplica without the start: the test sets Config, Env or Extra, then
// calls Start.
func newReplica(t testing.TB, dir, certs string) *Replica {
	t.Helper()
	requireTools(t)
	requireBuilt(t, drfsBin, "drfs (cmd/drfs)")
	d := scratchDir(t, "drfs-e2e-replica-")
	if dir == "" {
		dir = filepath.Join(d, "replica")
	}
	r := &Replica{t: t, Dir: dir, Addr: freeAddr(t), Metrics: freeAddr(t), Certs: certs, Logs: filepath.Join(d, "logs"), proc: proc{name: "drfs serve"}}
	if err := os.MkdirAll(r.Logs, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.cleanup)
	return r
}

// URL is the replica URL to give `drfs mount --replica`.
func (r *Replica) URL() string {
	if r.Certs != "" {
		return "https://" + r.Addr
	}
	return "http://" + r.Addr
}

// MountArgs are the `drfs mount` flags that replicate to r.
func (r *Replica) MountArgs(extra ...string) []string {
	a := []string{"--replica", r.URL()}
	if r.Certs != "" {
		a = append(a, "--certs", r.Certs)
	} else {
		a = append(a, "--insecure")
	}
	return append(a, extra...)
}

// DataDir is where volume v's files land.
func (r *Replica) DataDir(v string) string { return filepath.Join(r.Dir, v, "data") }

// Start starts (or restarts) `drfs serve` and waits for "serving".
func (r *Replica) Start() {
	t := r.t
	t.Helper()
	if r.Running() {
		t.Fatalf("replica already running")
	}
	args := append([]string{"serve", "--dir", r.Dir, "--listen", r.Addr, "--metrics", r.Metrics}, r.Extra...)
	switch {
	case r.Config != "":
		args = append([]string{"serve", "--config", r.Config}, r.Extra...)
	case r.Certs != "":
		args = append(args, "--certs", r.Certs)
	default:
		args = append(args, "--insecure")
	}
	r.starts++
	cmd := exec.Command(drfsBin, args...)
	cmd.Env = append(os.Environ(), r.Env...)
	ready, err := r.start(cmd, filepath.Join(r.Logs, fmt.Sprintf("serve.%d.log", r.starts)), "serving")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-r.exited():
		t.Fatalf("drfs serve exited before serving (%v):\n%s", r.exitErr(), r.Log())
	case <-time.After(15 * time.Second):
		t.Fatalf("drfs serve did not print \"serving\" within 15s:\n%s", r.Log())
	}
}

// serveStopTimeout is how long drfs serve has to exit after SIGTERM.
const serveStopTimeout = 30 * time.Second

// Stop sends SIGTERM and requires a clean exit within serveStopTimeout; a serve process
// stuck longer is asked for a goroutine dump and killed (proc.stop).
func (r *Replica) Stop() {
	r.t.Helper()
	if err := r.stop(serveStopTimeout); err != nil {
		r.t.Fatalf("replica Stop: %v\n%s", err, r.Log())
	}
}

// Signal sends sig to the running serve process (SIGHUP: reload its file).
func (r *Replica) Signal(sig syscall.Signal) {
	r.t.Helper()
	if !r.Running() {
		r.t.Fatalf("replica Signal %v: not running (exit: %v)\n%s", sig, r.exitErr(), r.Log())
	}
	if err := r.proc.Signal(sig); err != nil {
		r.t.Fatalf("signal %v to drfs serve: %v", sig, err)
	}
}

// Kill SIGKILLs the serve process.
func (r *Replica) Kill() {
	r.t.Helper()
	if !r.Running() {
		r.t.Fatalf("replica Kill: not running (exit: %v)\n%s", r.exitErr(), r.Log())
	}
	if err := r.kill(10 * time.Second); err != nil {
		r.t.Fatal(err)
	}
}

func (r *Replica) cleanup() {
	if r.Running() {
		if err := r.stop(serveStopTimeout); err != nil {
			r.t.Errorf("replica cleanup: %v\n%s", err, r.Log())
		}
	}
	if r.t.Failed() && r.logPath != "" {
		r.t.Logf("--- last drfs serve output (%s) ---\n%s", r.logPath, r.Log())
	}
}

// ReplicaVolume is one entry of `drfs status --dir DIR --json`.
type ReplicaVolume struct {
	Volume     string `json:"volume"`
	VolumeID   string `json:"volume_id"`
	Generation uint64 `json:"generation"`
	AppliedSeq uint64 `json:"applied_seq"`
	Consistent bool   `json:"consistent"`
	Points     int    `json:"recovery_points"`
	DataDir    string `json:"data_dir"`
	LastError  string `json:"last_error"`
}

// replicaStatus runs `drfs status --dir DIR --json` and returns volume v
// (ok false when v is not there).
func replicaStatus(t testing.TB, dir, v string) (ReplicaVolume, bool) {
	t.Helper()
	out := mustRun(t, 30*time.Second, drfsBin, "status", "--dir", dir, "--json")
	var vs []ReplicaVolume
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &vs); err != nil {
		t.Fatalf("drfs status --dir --json: not a JSON array: %v\n%s", err, out)
	}
	for _, x := range vs {
		if x.Volume == v {
			return x, true
		}
	}
	return ReplicaVolume{}, false
}

// Point is one entry of `drfs points --json`.
type Point struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Size int64     `json:"size"`
}

func replicaPoints(t testing.TB, dir, v string) []Point {
	t.Helper()
	out := mustRun(t, 30*time.Second, drfsBin, "points", "--dir", dir, "--volume", v, "--json")
	var ps []Point
	if s := strings.TrimSpace(out); s != "null" {
		if err := json.Unmarshal([]byte(s), &ps); err != nil {
			t.Fatalf("drfs points --json: not a JSON array: %v\n%s", err, out)
		}
	}
	return ps
}

// checkPoints requires strictly increasing recovery point seqs.
func checkPoints(t testing.TB, ps []Point, applied uint64) {
	t.Helper()
	if len(ps) == 0 {
		t.Errorf("drfs points: no recovery points")
		return
	}
	seen := map[uint64]bool{}
	for i, p := range ps {
		if seen[p.Seq] {
			t.Errorf("drfs points: seq %d listed twice: %+v", p.Seq, ps)
		}
		seen[p.Seq] = true
		if i > 0 && p.Seq <= ps[i-1].Seq {
			t.Errorf("drfs points: seqs not strictly increasing at %d: %d after %d", i, p.Seq, ps[i-1].Seq)
		}
	}
	if last := ps[len(ps)-1].Seq; last != applied {
		t.Errorf("drfs points: last point seq %d, replica applied_seq %d", last, applied)
	}
}

// statusQuiet is Mount.Status without logging (for polling); ok false when
// drfs status fails.
func (m *Mount) statusQuiet() (Status, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, drfsBin, "status", "--state", m.State, "--json").Output()
	if err != nil {
		return Status{}, false
	}
	var st Status
	if json.Unmarshal(out, &st) != nil {
		return Status{}, false
	}
	st.raw = strings.TrimSpace(string(out))
	return st, true
}

// Sync runs `drfs sync` and returns the acknowledged seq.
func (m *Mount) Sync(timeout time.Duration) uint64 {
	m.t.Helper()
	out, err := run(m.t, timeout+30*time.Second, drfsBin, "sync", "--state", m.State, "--timeout", timeout.String())
	if err != nil {
		st, _ := m.statusQuiet()
		m.t.Fatalf("drfs sync: %v\n%s\nstatus: %s\n--- daemon output ---\n%s", err, out, st.raw, m.DaemonLog())
	}
	var seq uint64
	i := strings.Index(out, "replica acknowledged seq ")
	if i < 0 {
		m.t.Fatalf("drfs sync printed %q, want \"replica acknowledged seq N\"", out)
	}
	fmt.Sscanf(out[i:], "replica acknowledged seq %d", &seq)
	m.t.Logf("drfs sync: %s", strings.TrimSpace(out))
	return seq
}

// scrapeMetrics fetches Prometheus text metrics from addr and sums every
// series of a metric over its labels.
func scrapeMetrics(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	res := map[string]float64{}
	for series, v := range scrapeSeries(t, addr) {
		res[metricName(series)] += v
	}
	return res
}

// requireMetric fails when a metric is not exported at all.
func requireMetric(t testing.TB, ms map[string]float64, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, ok := ms[n]; !ok {
			t.Errorf("metric %s is not exported", n)
		}
	}
}

// treeDiff compares the replica tree dst with the primary's source tree src:
// entry set, types, permission bits, sizes, contents, symlink targets, user
// xattrs, hard-link groups and (for sparse source files) allocation. It
// returns one line per difference.
func treeDiff(src, dst string) []string {
	var diffs []string
	add := func(f string, a ...any) { diffs = append(diffs, fmt.Sprintf(f, a...)) }
	seen := map[string]bool{}
	srcIno := map[uint64]string{}   // src inode -> first path
	linkPeer := map[string]string{} // path -> first path of its src inode
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			add("walk %s: %v", p, err)
			return nil
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		seen[rel] = true
		q := filepath.Join(dst, rel)
		var a, b unix.Stat_t
		if err := unix.Lstat(p, &a); err != nil {
			add("%s: lstat source: %v", rel, err)
			return nil
		}
		if err := unix.Lstat(q, &b); err != nil {
			add("%s: missing on the replica: %v", rel, err)
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if a.Mode&unix.S_IFMT != b.Mode&unix.S_IFMT {
			add("%s: type %o on the primary, %o on the replica", rel, a.Mode&unix.S_IFMT, b.Mode&unix.S_IFMT)
			return nil
		}
		if a.Mode&0o7777 != b.Mode&0o7777 && a.Mode&unix.S_IFMT != unix.S_IFLNK {
			add("%s: mode %04o on the primary, %04o on the replica", rel, a.Mode&0o7777, b.Mode&0o7777)
		}
		switch a.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			ta, _ := os.Readlink(p)
			tb, _ := os.Readlink(q)
			if ta != tb {
				add("%s: symlink -> %q on the primary, -> %q on the replica", rel, ta, tb)
			}
		case unix.S_IFREG:
			if a.Size != b.Size {
				add("%s: size %d on the primary, %d on the replica", rel, a.Size, b.Size)
			} else if off, err := firstDifference(p, q); err != nil {
				add("%s: compare: %v", rel, err)
			} else if off >= 0 {
				add("%s: contents differ from byte %d", rel, off)
			}
			if a.Nlink > 1 {
				if first, ok := srcIno[a.Ino]; ok {
					linkPeer[rel] = first
				} else {
					srcIno[a.Ino] = rel
				}
			}
			// Sparseness: where the primary has less than half its size
			// allocated, the replica must not allocate much more.
			if a.Size > 1<<20 && a.Blocks*512 < a.Size/2 && b.Blocks > a.Blocks+a.Blocks/4+2048 {
				add("%s: sparse on the primary (%d KiB allocated of %d KiB) but %d KiB allocated on the replica",
					rel, a.Blocks/2, a.Size>>10, b.Blocks/2)
			}
		}
		if xd := xattrDiff(p, q); xd != "" {
			add("%s: %s", rel, xd)
		}
		return nil
	})
	if err != nil {
		add("walk: %v", err)
	}
	for rel, first := range linkPeer {
		var a, b unix.Stat_t
		if unix.Lstat(filepath.Join(dst, rel), &a) != nil || unix.Lstat(filepath.Join(dst, first), &b) != nil {
			continue
		}
		if a.Ino != b.Ino {
			add("%s and %s are hard links on the primary but separate files (inodes %d, %d) on the replica", rel, first, a.Ino, b.Ino)
		}
	}
	filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dst, p)
		if rel != "." && !seen[rel] {
			add("%s: on the replica only", rel)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	sort.Strings(diffs)
	return diffs
}

// requireTreesEqual reports (t.Errorf)  the differences between the
// primary's source src and the replica tree dst.
func requireTreesEqual(t testing.TB, src, dst string) {
	t.Helper()
	d := treeDiff(src, dst)
	if len(d) == 0 {
		return
	}
	if len(d) > 40 {
		d = append(d[:40], fmt.Sprintf("... and %d more", len(d)-40))
	}
	t.Errorf("replica %s differs from the primary source %s:\n  %s", dst, src, strings.Join(d, "\n  "))
}

// requireSameTree is requireTreesEqual against a copy of a tree (cp -a):
// cp may turn zero runs into holes, so allocation is not compared.
func requireSameTree(t testing.TB, want, got string) {
	t.Helper()
	var d []string
	for _, x := range treeDiff(want, got) {
		if !strings.Contains(x, ": sparse on the primary (") {
			d = append(d, x)
		}
	}
	if len(d) == 0 {
		return
	}
	if len(d) > 40 {
		d = append(d[:40], fmt.Sprintf("... and %d more", len(d)-40))
	}
	t.Errorf("%s differs from the copy %s:\n  %s", got, want, strings.Join(d, "\n  "))
}

// firstDifference returns the offset of the first differing byte of two
// files of equal size, or -1.
func firstDifference(a, b string) (int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		n := min(na, nb)
		if !bytes.Equal(ba[:n], bb[:n]) {
			for i := 0; i < n; i++ {
				if ba[i] != bb[i] {
					return off + int64(i), nil
				}
			}
		}
		if na != nb {
			return off + int64(n), nil
		}
		off += int64(n)
		if ea != nil || eb != nil {
			return -1, nil
		}
	}
}

// userXattrs lists user.* xattrs of p (not following symlinks).
func userXattrs(p string) map[string]string {
	res := map[string]string{}
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return res
	}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			res[name] = "(error " + err.Error() + ")"
			continue
		}
		res[name] = string(v[:m])
	}
	return res
}

func xattrDiff(p, q string) string {
	a, b := userXattrs(p), userXattrs(q)
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, fmt.Sprintf("xattr %s missing on the replica", k))
		} else if v != w {
			d = append(d, fmt.Sprintf("xattr %s = %q on the primary, %q on the replica", k, v, w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, fmt.Sprintf("xattr %s on the replica only", k))
		}
	}
	sort.Strings(d)
	return strings.Join(d, "; ")
}

// waitFor polls cond every 100ms until it returns true or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drfsCmd runs the drfs binary and returns output and error (logged).
func drfsCmd(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	requireBuilt(t, drfsBin, "drfs (cmd/drfs)")
	return run(t, timeout, drfsBin, args...)
}
