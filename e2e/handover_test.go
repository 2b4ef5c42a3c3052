package e2e

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"drfs/internal/faultproxy"
)

// Planned failover when messages of the switch are lost: at every instant at
// most one side accepts guest writes, afterwards exactly one side is the
// primary, nothing acknowledged is lost, and the guest pause happens once and
// is bounded.

const probeBlocks = 256

// prober is a guest: it writes 4 KiB O_DIRECT blocks to one file of a mount,
// one at a time, and records every acknowledged write and how long each took.
type prober struct {
	path string
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	acked map[int64]uint64 // block -> last acknowledged counter
	ops   []probeOp
}

type probeOp struct {
	start, end time.Time
	err        error
}

// startProber creates the probe file on mnt and starts writing; it stops at
// cleanup (a write stuck in the daemon is abandoned after 30 s).
func startProber(t *testing.T, mnt string) *prober {
	t.Helper()
	p := &prober{path: filepath.Join(mnt, "probe.img"), stop: make(chan struct{}), done: make(chan struct{}), acked: map[int64]uint64{}}
	if err := os.WriteFile(p.path, make([]byte, probeBlocks*4096), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(p.path, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		defer unix.Close(fd)
		for i := uint64(1); ; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			blk := int64(i % probeBlocks)
			fillProbe(buf, blk, i)
			op := probeOp{start: time.Now()}
			_, op.err = unix.Pwrite(fd, buf, blk*4096)
			op.end = time.Now()
			p.mu.Lock()
			p.ops = append(p.ops, op)
			if op.err == nil {
				p.acked[blk] = i
			}
			p.mu.Unlock()
			if op.err != nil {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(func() { p.Stop() })
	return p
}

func fillProbe(b []byte, blk int64, i uint64) {
	for k := 0; k+16 <= len(b); k += 16 {
		binary.LittleEndian.PutUint64(b[k:], uint64(blk))
		binary.LittleEndian.PutUint64(b[k+8:], i)
	}
}

// Stop stops the prober and waits (bounded) for its last write.
func (p *prober) Stop() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
	}
}

// waitAcked waits until n more writes were acknowledged.
func (p *prober) waitAcked(t *testing.T, n int) {
	t.Helper()
	count := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		c := 0
		for _, o := range p.ops {
			if o.err == nil {
				c++
			}
		}
		return c
	}
	want := count() + n
	if !waitFor(30*time.Second, func() bool { return count() >= want }) {
		t.Fatalf("the probe acknowledged %d writes in 30s, want %d", count(), want)
	}
}

// check requires every acknowledged write to be in the file at path.
func (p *prober) check(t *testing.T, where, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lost := 0
	for blk, i := range p.acked {
		off := blk * 4096
		if int64(len(b)) < off+16 {
			lost++
			continue
		}
		got := binary.LittleEndian.Uint64(b[off+8:])
		if binary.LittleEndian.Uint64(b[off:]) != uint64(blk) || got < i {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%s: %d of %d acknowledged probe blocks are missing or older than acknowledged", where, lost, len(p.acked))
	}
}

// pauses returns the writes that took longer than d and the longest one.
func (p *prober) pauses(d time.Duration) (slow []probeOp, longest time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range p.ops {
		l := o.end.Sub(o.start)
		longest = max(longest, l)
		if l > d {
			slow = append(slow, o)
		}
	}
	return slow, longest
}

// lastAck returns when the last acknowledged write returned.
func (p *prober) lastAck() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.ops) - 1; i >= 0; i-- {
		if p.ops[i].err == nil {
			return p.ops[i].end
		}
	}
	return time.Time{}
}

// tryWrite reports whether a small write through mnt is accepted (within a
// bound: a paused write counts as not accepted).
func tryWrite(mnt string) error {
	done := make(chan error, 1)
	go func() {
		done <- os.WriteFile(filepath.Join(mnt, fmt.Sprintf("try-%d", time.Now().UnixNano())), []byte("x"), 0o644)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		return errors.New("write still blocked after 20s")
	}
}

// replicaFailoverState is the part of a replica's state.json this file reads.
type replicaFailoverState struct {
	Role       string `json:"role"`
	Generation uint64 `json:"generation"`
	Applied    uint64 `json:"applied_seq"`
	History    []struct {
		Generation uint64    `json:"generation"`
		Time       time.Time `json:"time"`
	} `json:"history"`
	Refused []struct {
		Key string `json:"key"`
	} `json:"refused_promotions"`
}

func readFailoverState(t testing.TB, dir, v string) replicaFailoverState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, v, "state", "state.json"))
	if err != nil {
		t.Fatalf("replica state: %v", err)
	}
	var st replicaFailoverState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("replica state.json: %v\n%s", err, b)
	}
	return st
}

// handOverRig is a primary replicating through a fault proxy, with a guest
// writing.
type handOverRig struct {
	r       *Replica
	px      *faultproxy.Proxy
	m       *Mount
	p       *prober
	metrics string // the primary's metrics address
}

func newHandOverRig(t *testing.T, vol, replicaDir string) *handOverRig {
	t.Helper()
	r := startReplica(t, replicaDir, "")
	px := startProxy(t, r.Addr, faultproxy.Faults{})
	metrics := freeAddr(t)
	m := testMountWith(t, MountOptions{Volume: vol, Args: []string{"--replica", "http://" + px.Addr(), "--insecure", "--interval", "continuous", "--metrics", metrics}})
	p := startProber(t, m.Mnt)
	p.waitAcked(t, 50)
	m.Sync(time.Minute)
	p.waitAcked(t, 20)
	return &handOverRig{r: r, px: px, m: m, p: p, metrics: metrics}
}

// promotePattern is the request line of the promote request.
func promotePattern(vol string) []byte { return []byte("POST /v1/volumes/" + vol + "/promote") }

// oneWriter requires that the two sides do not both accept writes, and
// returns which may ("old", "new" or ""). The promoted side is mounted and
// tried by mountNew.
func oneWriter(t *testing.T, g *handOverRig) string {
	t.Helper()
	st := readFailoverState(t, g.r.Dir, g.m.Volume)
	oldErr := tryWrite(g.m.Mnt)
	if st.Role != "promoted" {
		if oldErr != nil {
			return ""
		}
		return "old"
	}
	if oldErr == nil {
		t.Fatalf("split brain: the replica was promoted (generation %d) and the old primary still accepts writes\n--- old primary ---\n%s", st.Generation, g.m.DaemonLog())
	}
	if !errors.Is(oldErr, syscall.EROFS) {
		t.Errorf("write on the superseded primary: %v, want EROFS", oldErr)
	}
	return "new"
}

// mountNew mounts the promoted replica and requires it to take writes while
// the old primary still refuses them.
func mountNew(t *testing.T, g *handOverRig) {
	t.Helper()
	m2 := mountPromoted(t, g.r.Dir, g.m.Volume)
	if err := tryWrite(m2.Mnt); err != nil {
		t.Fatalf("the promoted side refuses writes: %v", err)
	}
	if err := tryWrite(g.m.Mnt); err == nil {
		t.Fatalf("split brain: both the old and the new primary accept writes")
	}
}

// checkPause requires the guest to have paused once, for at most bound: the
// daemon counts one failover pause, and the guest saw at most one long write.
func checkPause(t *testing.T, g *handOverRig, bound time.Duration) {
	t.Helper()
	slow, longest := g.p.pauses(time.Second)
	ms := scrapeMetrics(t, g.metrics)
	t.Logf("guest: longest write %v, %d writes over 1s; daemon: %v failover pauses, %.3fs in all",
		longest, len(slow), ms["drfs_shipper_failover_pause_seconds_count"], ms["drfs_shipper_failover_pause_seconds_sum"])
	if n := ms["drfs_shipper_failover_pause_seconds_count"]; n != 1 {
		t.Errorf("the daemon paused the guests %v times, want once", n)
	}
	if len(slow) > 1 {
		t.Errorf("the guest paused %d times (writes over 1s), want once", len(slow))
	}
	if longest > bound {
		t.Errorf("the guest paused %v, bound %v", longest, bound)
	}
}

// TestHandOver_MessageLoss loses, in turn, the promote request, half of it,
// its reply, every request and every reply of a planned failover.
func TestHandOver_MessageLoss(t *testing.T) {
	requireTools(t)
	const timeout = 6 * time.Second
	for _, tc := range []struct {
		name   string
		action faultproxy.MatchAction
		times  int    // 0: until the faults are cleared
		want   string // side that is the primary in the end
	}{
		{"request-lost", faultproxy.CutRequest, 1, "new"},
		{"request-torn", faultproxy.CutMidway, 1, "new"},
		{"reply-lost", faultproxy.CutReply, 1, "new"},
		{"replica-unreachable", faultproxy.CutRequest, 0, "old"},
		{"reply-never-arrives", faultproxy.CutReply, 0, "new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol := "ho-" + tc.name
			g := newHandOverRig(t, vol, "")
			g.px.SetFaults(faultproxy.Faults{Match: &faultproxy.MatchFault{Pattern: promotePattern(vol), Action: tc.action, Times: tc.times}})
			out, ferr := drfsCmd(t, time.Minute, "failover", "--planned", "--state", g.m.State, "--timeout", timeout.String())
			t.Logf("drfs failover --planned (%v):\n%s", ferr, out)
			if g.px.Stats().Matched == 0 {
				t.Fatalf("test setup: the proxy never saw the promote request")
			}
			// Whatever happened, the two sides never both take writes.
			side := oneWriter(t, g)
			if tc.times > 0 {
				if ferr != nil {
					t.Fatalf("planned failover with one %s fault failed: %v\n%s\n--- daemon ---\n%s", tc.name, ferr, out, g.m.DaemonLog())
				}
			} else {
				if ferr == nil || !strings.Contains(out, "drfs failover --resolve") {
					t.Fatalf("planned failover with the replica's answer lost for good: %v, want an in-doubt error naming drfs failover --resolve:\n%s", ferr, out)
				}
				if side == "old" {
					t.Fatalf("in doubt, the old primary must refuse writes")
				}
				var st struct {
					Failover string `json:"failover"`
				}
				if raw := g.m.Status().raw; json.Unmarshal([]byte(raw), &st) != nil || st.Failover != "in-doubt" {
					t.Errorf("status while in doubt does not say failover in-doubt: %s", raw)
				}
				g.px.SetFaults(faultproxy.Faults{})
				out, err := drfsCmd(t, time.Minute, "failover", "--resolve", "--state", g.m.State)
				t.Logf("drfs failover --resolve (%v):\n%s", err, out)
				if err != nil {
					t.Fatalf("drfs failover --resolve: %v\n%s", err, out)
				}
				side = oneWriter(t, g)
			}
			if side != tc.want {
				t.Fatalf("the primary is the %q side, want %q", side, tc.want)
			}
			st := readFailoverState(t, g.r.Dir, vol)
			switch side {
			case "new":
				if st.Generation != 2 || len(st.History) != 2 {
					t.Errorf("replica generation %d with %d history entries, want exactly one promotion to 2", st.Generation, len(st.History))
				}
				if last := g.p.lastAck(); last.After(st.History[len(st.History)-1].Time) {
					t.Errorf("the old primary acknowledged a write at %s, after the replica was promoted at %s", last, st.History[len(st.History)-1].Time)
				}
				g.p.Stop()
				g.p.check(t, "promoted replica", filepath.Join(g.r.DataDir(vol), "probe.img"))
				requireTreesEqual(t, g.m.Src, g.r.DataDir(vol))
				mountNew(t, g)
			case "old":
				if len(st.Refused) == 0 {
					t.Errorf("the replica did not record the aborted promotion: %+v", st)
				}
				g.p.waitAcked(t, 20)
				g.p.Stop()
				g.m.Sync(time.Minute)
				g.p.check(t, "old primary", filepath.Join(g.m.Src, "probe.img"))
				requireTreesEqual(t, g.m.Src, g.r.DataDir(vol))
			}
			checkPause(t, g, timeout+2*time.Second)
		})
	}
}

// failoverPhase reads the "failover" field of drfs status.
func failoverPhase(m *Mount) string {
	st, ok := m.statusQuiet()
	if !ok {
		return ""
	}
	var f struct {
		Failover string `json:"failover"`
	}
	json.Unmarshal([]byte(st.raw), &f)
	return f.Failover
}

// TestHandOver_Kill9AfterIntent kills the primary with SIGKILL after it
// recorded the hand-over and asked the replica, while the answer is lost:
// the restarted primary must not take writes until the outcome is known, and
// then ends on the right side: the primary again when the replica never got
// the request, demoted when the replica promoted.
func TestHandOver_Kill9AfterIntent(t *testing.T) {
	requireTools(t)
	for _, tc := range []struct {
		name   string
		action faultproxy.MatchAction
		want   string
	}{
		{"request-lost", faultproxy.CutRequest, "old"},
		{"reply-lost", faultproxy.CutReply, "new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol := "kill-" + tc.name
			g := newHandOverRig(t, vol, "")
			g.px.SetFaults(faultproxy.Faults{Match: &faultproxy.MatchFault{Pattern: promotePattern(vol), Action: tc.action}})
			failed := make(chan string, 1)
			go func() {
				out, err := run(t, 2*time.Minute, drfsBin, "failover", "--planned", "--state", g.m.State, "--timeout", "60s")
				failed <- fmt.Sprintf("%v: %s", err, out)
			}()
			if !waitFor(30*time.Second, func() bool { return g.px.Stats().Matched >= 2 && failoverPhase(g.m) == "promoting" }) {
				t.Fatalf("the failover never reached the promote step: %s", g.m.DaemonLog())
			}
			g.m.Kill()
			t.Logf("drfs failover after the kill: %s", <-failed)
			g.p.Stop()
			if err := g.m.TryRemount(); err != nil {
				// Refusing to mount at all would also keep writes out, but the volume must stay
				// readable for its guests.
				t.Fatalf("the primary does not come back after the kill: %v", err)
			}
			if err := tryWrite(g.m.Mnt); !errors.Is(err, syscall.EROFS) {
				t.Fatalf("after a kill -9 with the hand-over in doubt, a write on the restarted primary: %v, want EROFS", err)
			}
			if ph := failoverPhase(g.m); ph != "in-doubt" {
				t.Errorf("status after the restart: failover %q, want in-doubt", ph)
			}
			// Every write acknowledged before the pause is on the restarted primary.
			g.p.check(t, "restarted primary", filepath.Join(g.m.Src, "probe.img"))
			time.Sleep(2 * time.Second) // the daemon keeps asking, and keeps getting no answer
			if err := tryWrite(g.m.Mnt); !errors.Is(err, syscall.EROFS) {
				t.Fatalf("still in doubt, a write on the restarted primary: %v, want EROFS", err)
			}
			// The network heals: the daemon learns the outcome by itself.
			g.px.SetFaults(faultproxy.Faults{})
			if !waitFor(30*time.Second, func() bool { ph := failoverPhase(g.m); return ph == "" }) {
				t.Fatalf("the restarted primary did not resolve the failover once the replica was reachable: %s", g.m.DaemonLog())
			}
			side := oneWriter(t, g)
			if side != tc.want {
				t.Fatalf("after the resolution the %q side is the primary, want %q", side, tc.want)
			}
			if side == "new" {
				if st := g.m.Status(); st.ReplicationState != "demoted" {
					t.Errorf("old primary after learning of the promotion: %s", st.raw)
				}
				requireTreesEqual(t, g.m.Src, g.r.DataDir(vol))
				mountNew(t, g)
				return
			}
			g.m.Sync(time.Minute)
			requireTreesEqual(t, g.m.Src, g.r.DataDir(vol))
		})
	}
}

// TestHandOver_ReplicaCannotApply: a replica whose disk is full, or that
// cannot write a file, makes a planned failover (asked on either side) fail
// at once: the primary takes writes again after one short pause, the replica
// stays a replica, a hand-over request is tried once, and replication catches
// up when the replica is fixed.
func TestHandOver_ReplicaCannotApply(t *testing.T) {
	requireTools(t, "chattr", "dd")
	const bound = 10 * time.Second
	t.Run("disk-full", func(t *testing.T) {
		fs := smallFS(t, "64M")
		vol := "full"
		g := newHandOverRig(t, vol, filepath.Join(fs, "replica"))
		filler := filepath.Join(fs, "filler")
		run(t, time.Minute, "dd", "if=/dev/zero", "of="+filler, "bs=1M") // ends with ENOSPC
		g.p.waitAcked(t, 50)
		out, err := drfsCmd(t, time.Minute, "failover", "--planned", "--state", g.m.State, "--timeout", "60s")
		t.Logf("drfs failover --planned (%v):\n%s", err, out)
		if err == nil || !strings.Contains(out, "cannot apply") || !strings.Contains(out, "still the primary") {
			t.Fatalf("planned failover to a replica with a full disk: %v, want a failure naming the replica's apply error and saying nothing changed:\n%s", err, out)
		}
		if side := oneWriter(t, g); side != "old" {
			t.Fatalf("after the failed failover the %q side takes writes, want the old primary", side)
		}
		g.p.waitAcked(t, 20)
		checkPause(t, g, bound)
		os.Remove(filler)
		g.p.Stop()
		g.m.Sync(time.Minute)
		g.p.check(t, "replica after its disk was freed", filepath.Join(g.r.DataDir(vol), "probe.img"))
		requireTreesEqual(t, g.m.Src, g.r.DataDir(vol))
	})
	t.Run("hand-over-request", func(t *testing.T) {
		vol := "immutable"
		g := newHandOverRig(t, vol, "")
		target := filepath.Join(g.r.DataDir(vol), "probe.img")
		mustRun(t, time.Minute, "chattr", "+i", target)
		t.Cleanup(func() { run(t, time.Minute, "chattr", "-i", target) })
		g.p.waitAcked(t, 50)
		t0 := time.Now()
		out, err := drfsCmd(t, 45*time.Second, "promote", "--dir", g.r.Dir, "--volume", vol)
		t.Logf("drfs promote (%v, %s):\n%s", err, time.Since(t0).Round(time.Millisecond), out)
		if err == nil || !strings.Contains(out, "did not happen") {
			t.Fatalf("drfs promote asking a live primary whose replica cannot apply: %v, want a prompt failure saying the hand-over did not happen:\n%s", err, out)
		}
		time.Sleep(3 * time.Second) // several heartbeats: the request must not run again
		if side := oneWriter(t, g); side != "old" {
			t.Fatalf("after the failed hand-over the %q side takes writes, want the old primary", side)
		}
		g.p.waitAcked(t, 20)
		checkPause(t, g, bound)
		run(t, time.Minute, "chattr", "-i", target)
		g.p.Stop()
		g.m.Sync(time.Minute)
		g.p.check(t, "replica once the file was writable", target)
		requireTreesEqual(t, g.m.Src, g.r.DataDir(vol))
	})
}
