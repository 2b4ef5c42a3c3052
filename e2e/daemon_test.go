package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Daemon is one running `drfs daemon --config`.
type Daemon struct {
	t       testing.TB
	Dir     string // scratch directory: the volumes' directories, logs
	Config  string // the configuration file
	Socket  string
	Metrics string

	proc
	starts int
}

// newDaemon makes a scratch directory for a daemon; nothing runs yet.
func newDaemon(t testing.TB) *Daemon {
	t.Helper()
	requireTools(t, "umount")
	requireBuilt(t, drfsBin, "drfs (cmd/drfs)")
	d := &Daemon{t: t, Dir: scratchDir(t, "drfs-e2e-daemon-"), proc: proc{name: "daemon"}}
	d.Config = filepath.Join(d.Dir, "drfs.yaml")
	d.Socket = filepath.Join(d.Dir, "drfs.sock")
	d.Metrics = freeAddr(t)
	if err := os.MkdirAll(filepath.Join(d.Dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.cleanup)
	return d
}

// VolumeYAML is one volume entry, its directories under the daemon's scratch directory
// (created), with extra keys (indented as the entry's).
func (d *Daemon) VolumeYAML(name string, extra ...string) string {
	d.t.Helper()
	for _, sub := range []string{"src", "mnt"} {
		if err := os.MkdirAll(d.Path(name, sub), 0o755); err != nil {
			d.t.Fatal(err)
		}
	}
	s := fmt.Sprintf("  - name: %s\n    source: %s\n    state: %s\n    mountpoint: %s\n", name, d.Path(name, "src"), d.Path(name, "state"), d.Path(name, "mnt"))
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

// Path is a directory of volume name: src, state or mnt.
func (d *Daemon) Path(name, sub string) string { return filepath.Join(d.Dir, name, sub) }

// WriteConfig writes the configuration file: the socket and metrics the test uses, then body.
func (d *Daemon) WriteConfig(body string) {
	d.t.Helper()
	head := fmt.Sprintf("socket: %s\nmetrics:\n  listen: %s\n", d.Socket, d.Metrics)
	if err := os.WriteFile(d.Config, []byte(head+body), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// Start starts the daemon and waits until its socket answers.
func (d *Daemon) Start() {
	t := d.t
	t.Helper()
	d.starts++
	logPath := filepath.Join(d.Dir, "logs", fmt.Sprintf("daemon.%d.log", d.starts))
	if _, err := d.start(exec.Command(drfsBin, "daemon", "--config", d.Config), logPath, ""); err != nil {
		t.Fatal(err)
	}
	done := d.exited()
	if !waitFor(15*time.Second, func() bool {
		select {
		case <-done:
			return true
		default:
		}
		_, ok := d.status()
		return ok
	}) || !d.Running() {
		t.Fatalf("drfs daemon did not answer on %s (exit %v):\n%s", d.Socket, d.exitErr(), d.Log())
	}
}

// FullLog is the daemon's whole log.
func (d *Daemon) FullLog() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// HostStatus is `drfs status --socket S --json`.
type HostStatus struct {
	Config  string       `json:"config"`
	Volumes []HostVolume `json:"volumes"`
	Links   []struct {
		Site                   string  `json:"site"`
		CapacityBytesPerSecond float64 `json:"capacity_bytes_per_second"`
		BusyRatio              float64 `json:"busy_ratio"`
	} `json:"links"`
}

// HostVolume is one volume of a HostStatus.
type HostVolume struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Mountpoint string `json:"mountpoint"`
	Site       string `json:"site"`
	Schedule   string `json:"schedule"`
	Error      string `json:"error"`
	Restarts   int    `json:"restarts"`
	Status     *struct {
		JournalSeq       uint64  `json:"journal_seq"`
		AckedSeq         uint64  `json:"acked_seq"`
		ReplicationState string  `json:"replication_state"`
		Schedule         string  `json:"schedule"`
		PendingBytes     int64   `json:"pending_bytes"`
		LagSeconds       float64 `json:"lag_seconds"`
		Link             *struct {
			Tier          int     `json:"tier"`
			AtRisk        bool    `json:"at_risk"`
			MissInSeconds float64 `json:"miss_in_seconds"`
			ShareRatio    float64 `json:"share_ratio"`
			BacklogBytes  int64   `json:"backlog_bytes"`
		} `json:"link"`
	} `json:"status"`
}

func (d *Daemon) status() (HostStatus, bool) {
	out, err := exec.Command(drfsBin, "status", "--socket", d.Socket, "--json").Output()
	if err != nil {
		return HostStatus{}, false
	}
	var st HostStatus
	if json.Unmarshal(out, &st) != nil {
		return HostStatus{}, false
	}
	return st, true
}

// Status is the daemon's status; it fails the test when the daemon does not answer.
func (d *Daemon) Status() HostStatus {
	d.t.Helper()
	st, ok := d.status()
	if !ok {
		d.t.Fatalf("drfs status --socket %s failed:\n%s", d.Socket, d.Log())
	}
	return st
}

// Volume is the status of volume name ("" State when the daemon does not run it).
func (d *Daemon) Volume(name string) HostVolume {
	d.t.Helper()
	for _, v := range d.Status().Volumes {
		if v.Name == name {
			return v
		}
	}
	return HostVolume{}
}

// WaitVolume waits until volume name is in state (and replicating, for a replicated volume
// that is running).
func (d *Daemon) WaitVolume(name, state string, timeout time.Duration) HostVolume {
	d.t.Helper()
	var v HostVolume
	if !waitFor(timeout, func() bool {
		v = d.Volume(name)
		if v.State != state {
			return false
		}
		return state != "running" || v.Site == "" || (v.Status != nil && v.Status.ReplicationState == "replicating")
	}) {
		d.t.Fatalf("volume %s is %q (%+v), want %q after %v:\n%s", name, v.State, v, state, timeout, d.Log())
	}
	return v
}

// Reload runs drfs reload and returns its output.
func (d *Daemon) Reload() (string, error) {
	d.t.Helper()
	return run(d.t, 2*time.Minute, drfsBin, "reload", "--socket", d.Socket)
}

// daemonStopTimeout is how long a daemon has to stop all its volumes after SIGTERM.
const daemonStopTimeout = 30 * time.Second

// Stop sends SIGTERM and waits for a clean exit; a daemon stuck for daemonStopTimeout is
// asked for a goroutine dump and killed (proc.stop).
func (d *Daemon) Stop() {
	d.t.Helper()
	if err := d.stop(daemonStopTimeout); err != nil {
		d.t.Fatalf("stop: %v\n%s", err, d.Log())
	}
}

func (d *Daemon) cleanup() {
	if d.Running() {
		if err := d.stop(daemonStopTimeout); err != nil {
			d.t.Errorf("cleanup: %v\n%s", err, d.Log())
		}
	}
	ents, _ := os.ReadDir(d.Dir)
	for _, e := range ents {
		if p := filepath.Join(d.Dir, e.Name(), "mnt"); isMounted(p) {
			d.t.Errorf("%s still mounted after the daemon stopped", p)
			forceUnmount(p)
		}
	}
	if d.t.Failed() && d.logPath != "" {
		d.t.Logf("--- daemon log (%s) ---\n%s", d.logPath, d.Log())
	}
}

// mounts counts the times the daemon mounted volume name.
func (d *Daemon) mounts(name string) int {
	return strings.Count(d.FullLog(), "mounted volume volume="+name+" ")
}

// mountID is the kernel's id of the mount at p (/proc/self/mountinfo's first field): a volume
// mounted again gets a new one.
func mountID(t testing.TB, p string) int {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && unescapeMountinfo(fs[4]) == p {
			id, _ := strconv.Atoi(fs[0])
			return id
		}
	}
	t.Fatalf("%s is not mounted", p)
	return 0
}

// A reload touches what changed, as little as the change needs, and nothing else: a schedule
// change applies in place, a replica change restarts only the shipper, a removed volume is
// unmounted cleanly, an added one comes up; files held open on every other volume keep
// working through it. A broken file is refused whole. A change of the mount itself mounts that
// volume again.
func TestDaemon_ReloadTouchesOnlyWhatChanged(t *testing.T) {
	d := newDaemon(t)
	rep1, rep2 := filepath.Join(d.Dir, "rep1"), filepath.Join(d.Dir, "rep2")
	sites := fmt.Sprintf("sites:\n  dr1:\n    url: file://%s\n  dr2:\n    url: file://%s\nvolumes:\n", rep1, rep2)
	keep := d.VolumeYAML("keep", "replica: dr1", "rpo: 30s")
	gone := d.VolumeYAML("gone")
	d.WriteConfig(sites + keep + d.VolumeYAML("sched", "replica: dr1", "interval: 1h") +
		d.VolumeYAML("move", "replica: dr1", "rpo: 30s") + gone)
	d.Start()
	ids := map[string]int{}
	fds := map[string]int{}
	defer func() {
		for _, fd := range fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	for _, v := range []string{"keep", "sched", "move", "gone"} {
		d.WaitVolume(v, "running", 30*time.Second)
		ids[v] = mountID(t, d.Path(v, "mnt"))
		fd, err := unix.Open(filepath.Join(d.Path(v, "mnt"), "held"), unix.O_RDWR|unix.O_CREAT, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fds[v] = fd
		if _, err := unix.Pwrite(fd, []byte("before "+v), 0); err != nil {
			t.Fatal(err)
		}
	}
	unix.Close(fds["gone"])
	fds["gone"] = -1

	// sched: interval 1h -> rpo 4s (schedule); move: dr1 -> dr2 (replica); gone removed; new added.
	d.WriteConfig(sites + keep + d.VolumeYAML("sched", "replica: dr1", "rpo: 4s", "tier: 2") +
		d.VolumeYAML("move", "replica: dr2", "rpo: 30s") + d.VolumeYAML("new"))
	out, err := d.Reload()
	if err != nil {
		t.Fatalf("drfs reload: %v\n%s", err, out)
	}
	for _, want := range []string{"added      new", "removed    gone", "sched (interval,rpo,tier: schedule)", "move (replica: replication)", "untouched  keep"} {
		if !strings.Contains(out, want) {
			t.Errorf("drfs reload output lacks %q:\n%s", want, out)
		}
	}
	d.WaitVolume("new", "running", 30*time.Second)
	if isMounted(d.Path("gone", "mnt")) {
		t.Errorf("removed volume gone is still mounted")
	}
	if st := statusOf(t, d.Path("gone", "state")); st.Clean == nil || !*st.Clean {
		t.Errorf("removed volume gone did not stop cleanly: %s", st.raw)
	}
	for _, v := range []string{"keep", "sched", "move"} {
		if n := d.mounts(v); n != 1 {
			t.Errorf("volume %s was mounted %d times, want once: the reload did not change its mount", v, n)
		}
		if id := mountID(t, d.Path(v, "mnt")); id != ids[v] {
			t.Errorf("volume %s was mounted again (mount id %d -> %d) by a reload that did not change its mount", v, ids[v], id)
		}
		if _, err := unix.Pwrite(fds[v], []byte("after  "+v), 0); err != nil {
			t.Errorf("volume %s: a file held open through the reload: %v", v, err)
		}
		if err := unix.Fsync(fds[v]); err != nil {
			t.Errorf("volume %s: fsync after the reload: %v", v, err)
		}
	}
	// sched ships on its new 4 s target without being asked (every hour, it would not).
	if v := d.Volume("sched"); v.Status == nil || v.Status.Schedule != "rpo 4s" {
		t.Errorf("sched's schedule after the reload: %+v", v.Status)
	}
	if !waitFor(20*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(rep1, "sched", "data", "held"))
		return string(b) == "after  sched"
	}) {
		t.Errorf("sched's write did not reach its replica on the new 4 s target:\n%s", d.Log())
	}
	// move replicates to dr2 now, keep still to dr1.
	for v, rep := range map[string]string{"move": rep2, "keep": rep1} {
		mustRun(t, time.Minute, drfsBin, "sync", "--state", d.Path(v, "state"), "--timeout", "50s")
		if b, err := os.ReadFile(filepath.Join(rep, v, "data", "held")); err != nil || string(b) != "after  "+v {
			t.Errorf("volume %s on its replica %s: %q, %v", v, rep, b, err)
		}
	}

	// A file with problems changes nothing.
	good, _ := os.ReadFile(d.Config)
	bad := strings.Replace(string(good), "rpo: 4s", "rpoo: 4s", 1) +
		fmt.Sprintf("  - name: dup\n    source: %s\n    state: %s\n    mountpoint: %s\n", d.Path("dup", "src"), d.Path("keep", "state"), d.Path("dup", "mnt"))
	if err := os.WriteFile(d.Config, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = d.Reload()
	if err == nil {
		t.Fatalf("drfs reload of a broken file succeeded:\n%s", out)
	}
	for _, want := range []string{"drfs.yaml:", "volumes[1].rpoo: unknown field", "two volumes cannot share a state directory", "the running configuration stays"} {
		if !strings.Contains(out, want) {
			t.Errorf("drfs reload of a broken file: output lacks %q:\n%s", want, out)
		}
	}
	if st := d.Status(); len(st.Volumes) != 4 {
		t.Errorf("after a refused reload the daemon runs %d volumes, want the 4 it ran", len(st.Volumes))
	}
	if v := d.Volume("sched"); v.Status == nil || v.Status.Schedule != "rpo 4s" {
		t.Errorf("a refused reload changed sched: %+v", v.Status)
	}
	if m := scrapeSeries(t, d.Metrics); m[`drfs_daemon_reloads_total{result="refused"}`] != 1 || m[`drfs_daemon_reloads_total{result="applied"}`] != 1 {
		t.Errorf("reload counters: refused %v applied %v", m[`drfs_daemon_reloads_total{result="refused"}`], m[`drfs_daemon_reloads_total{result="applied"}`])
	}

	// A change of keep's mount (its checkpoints) mounts it again; its files stay.
	unix.Close(fds["keep"])
	fds["keep"] = -1
	if err := os.WriteFile(d.Config, []byte(strings.Replace(string(good), "rpo: 30s\n", "rpo: 30s\n    checkpoint-interval: 5s\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := d.Reload(); err != nil || !strings.Contains(out, "keep (checkpoint-interval: mount)") {
		t.Fatalf("drfs reload: %v\n%s", err, out)
	}
	if !waitFor(30*time.Second, func() bool {
		v := d.Volume("keep")
		return v.State == "running" && isMounted(d.Path("keep", "mnt")) && d.mounts("keep") == 2
	}) {
		t.Fatalf("keep was not mounted again after its mount changed:\n%s", d.Log())
	}
	if b, err := os.ReadFile(filepath.Join(d.Path("keep", "mnt"), "held")); err != nil || string(b) != "after  keep" {
		t.Errorf("keep after it was mounted again: %q, %v", b, err)
	}
	for v, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
			fds[v] = -1
		}
	}
	d.Stop()
	for _, v := range []string{"keep", "sched", "move", "new"} {
		if isMounted(d.Path(v, "mnt")) {
			t.Errorf("%s still mounted after the daemon stopped", v)
		}
	}
}

// statusOf is `drfs status --state DIR --json` of a volume no drfs runs.
func statusOf(t testing.TB, state string) Status {
	t.Helper()
	m := &Mount{t: t, State: state}
	return m.Status()
}

// A volume that cannot start (its state directory is held by another drfs) is tried again
// and again, alone: the other volume of the host mounts, takes writes and replicates the whole
// time, the failing one is reported with its error, and it comes up by itself once the cause
// is gone.
func TestDaemon_FailingVolumeStaysAlone(t *testing.T) {
	other := testMount(t) // another drfs holds this state directory
	mustWriteFile(t, filepath.Join(other.Mnt, "f"), []byte("written by the other drfs"), 0o644)
	d := newDaemon(t)
	rep := filepath.Join(d.Dir, "rep")
	d.WriteConfig(fmt.Sprintf("sites:\n  dr:\n    url: file://%s\nvolumes:\n", rep) +
		d.VolumeYAML("good", "replica: dr", "rpo: 30s") +
		fmt.Sprintf("  - name: %s\n    source: %s\n    state: %s\n    mountpoint: %s\n", other.Volume, other.Src, other.State, d.Path("bad", "mnt")))
	if err := os.MkdirAll(d.Path("bad", "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	d.Start()
	d.WaitVolume("good", "running", 30*time.Second)
	var bad HostVolume
	if !waitFor(20*time.Second, func() bool { bad = d.Volume(other.Volume); return bad.Restarts >= 2 }) {
		t.Fatalf("the volume whose state is held elsewhere: %+v", bad)
	}
	if bad.State != "restarting" && bad.State != "starting" || !strings.Contains(bad.Error, "drfs") {
		t.Errorf("failing volume reported as %q with error %q", bad.State, bad.Error)
	}
	for i := range 5 {
		mustWriteFile(t, filepath.Join(d.Path("good", "mnt"), fmt.Sprintf("f%d", i)), randBytes(uint64(i), 64<<10), 0o644)
	}
	mustRun(t, time.Minute, drfsBin, "sync", "--state", d.Path("good", "state"), "--timeout", "50s")
	requireTreesEqual(t, d.Path("good", "src"), filepath.Join(rep, "good", "data"))
	m := scrapeSeries(t, d.Metrics)
	if m[`drfs_daemon_volume_up{volume="good"}`] != 1 || m[`drfs_daemon_volume_up{volume="`+other.Volume+`"}`] != 0 {
		t.Errorf("drfs_daemon_volume_up: good %v, failing %v", m[`drfs_daemon_volume_up{volume="good"}`], m[`drfs_daemon_volume_up{volume="`+other.Volume+`"}`])
	}
	if m[`drfs_daemon_volume_failures_total{volume="`+other.Volume+`"}`] < 2 {
		t.Errorf("failures of the failing volume: %v", m[`drfs_daemon_volume_failures_total{volume="`+other.Volume+`"}`])
	}
	table := mustRun(t, 30*time.Second, drfsBin, "status", "--socket", d.Socket)
	if !strings.Contains(table, other.Volume+": ") || !strings.Contains(table, "failures") {
		t.Errorf("drfs status does not show the failing volume's error:\n%s", table)
	}

	other.Stop()
	d.WaitVolume(other.Volume, "running", 30*time.Second)
	if b, err := os.ReadFile(filepath.Join(d.Path("bad", "mnt"), "f")); err != nil || string(b) != "written by the other drfs" {
		t.Errorf("the volume, once up: %q, %v", b, err)
	}
	d.Stop()
}

// Two volumes share one link of 1 MiB/s: the bulk one has 24 MiB to ship, then the important
// one writes 1 MiB. The important one is replicated long before the bulk one's backlog is
// shipped, and the scheduler names the bulk volume as the one that will miss its target —
// not the important one.
func TestDaemon_SharedLinkGoesToTheHigherTier(t *testing.T) {
	r := startReplica(t, "", "")
	d := newDaemon(t)
	d.WriteConfig(fmt.Sprintf("sites:\n  dr:\n    url: %s\n    insecure: true\n    bandwidth: 1M\nvolumes:\n", r.URL()) +
		d.VolumeYAML("gold", "replica: dr", "rpo: 30s", "tier: 1") +
		d.VolumeYAML("bulk", "replica: dr", "rpo: 20s", "tier: 5"))
	d.Start()
	d.WaitVolume("gold", "running", 30*time.Second)
	d.WaitVolume("bulk", "running", 30*time.Second)

	mustWriteFile(t, filepath.Join(d.Path("bulk", "mnt"), "big"), randBytes(7, 24<<20), 0o644)
	if !waitFor(15*time.Second, func() bool {
		v := d.Volume("bulk")
		return v.Status != nil && v.Status.AckedSeq > 0 && v.Status.PendingBytes > 0
	}) {
		t.Fatalf("bulk never started shipping: %+v\n%s", d.Volume("bulk"), d.Log())
	}
	mustWriteFile(t, filepath.Join(d.Path("gold", "mnt"), "db"), randBytes(8, 1<<20), 0o644)
	start := time.Now()
	mustRun(t, time.Minute, drfsBin, "sync", "--state", d.Path("gold", "state"), "--timeout", "50s")
	took := time.Since(start)
	bulk := d.Volume("bulk")
	if bulk.Status == nil || bulk.Status.PendingBytes < 4<<20 {
		t.Fatalf("gold was replicated in %v, but bulk had only %+v left: gold did not go first", took, bulk.Status)
	}
	t.Logf("gold replicated in %v with %d MiB of bulk still waiting", took.Round(time.Millisecond), bulk.Status.PendingBytes>>20)

	var atRisk bool
	if !waitFor(20*time.Second, func() bool {
		v := d.Volume("bulk")
		atRisk = v.Status != nil && v.Status.Link != nil && v.Status.Link.AtRisk
		return atRisk
	}) {
		t.Errorf("bulk (20 s target, ~20 MiB behind on a 1 MiB/s link) was never predicted at risk: %+v", d.Volume("bulk").Status)
	}
	if g := d.Volume("gold"); g.Status == nil || g.Status.Link == nil || g.Status.Link.AtRisk || g.Status.Link.Tier != 1 {
		t.Errorf("gold's place on the link: %+v", g.Status)
	}
	mustRun(t, 2*time.Minute, drfsBin, "sync", "--state", d.Path("bulk", "state"), "--timeout", "100s")
	requireTreesEqual(t, d.Path("gold", "src"), r.DataDir("gold"))
	requireTreesEqual(t, d.Path("bulk", "src"), r.DataDir("bulk"))
	log := d.FullLog()
	if !strings.Contains(log, "RPO target will be missed") || !strings.Contains(log, "volume=bulk") {
		t.Errorf("the daemon's log does not name bulk as the volume that will miss its target:\n%s", d.Log())
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "RPO target will be missed") && strings.Contains(l, "volume=gold") {
			t.Errorf("gold predicted to miss: %s", l)
		}
	}
	m := scrapeSeries(t, d.Metrics)
	for _, s := range []string{`drfs_shipper_lag_seconds{volume="gold"}`, `drfs_link_share_ratio{site="dr",volume="bulk"}`, `drfs_link_capacity_bytes_per_second{site="dr"}`} {
		if _, ok := m[s]; !ok {
			t.Errorf("metric %s not exported", s)
		}
	}
	d.Stop()
}

// A mount namespace made while a volume is mounted (ip netns exec, unshare, a container with a
// private root) keeps a copy of the mount: unmounting it here does not end the FUSE
// connection. The daemon still stops, cleanly, aborting that connection.
func TestDaemon_StopsWhenAnotherNamespaceHoldsTheMount(t *testing.T) {
	requireTools(t, "unshare")
	d := newDaemon(t)
	d.WriteConfig("volumes:\n" + d.VolumeYAML("v"))
	d.Start()
	d.WaitVolume("v", "running", 30*time.Second)
	mustWriteFile(t, filepath.Join(d.Path("v", "mnt"), "f"), []byte("kept"), 0o644)
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "sleep", "300")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	// The copy exists once the holder runs in its own namespace.
	if !waitFor(10*time.Second, func() bool {
		a, _ := os.Readlink("/proc/self/ns/mnt")
		b, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", holder.Process.Pid))
		return b != "" && a != b
	}) {
		t.Fatal("unshare did not make a mount namespace")
	}
	start := time.Now()
	d.Stop()
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(d.FullLog(), "another mount namespace still holds the mount") {
		t.Errorf("the daemon did not say why it aborted the connection:\n%s", d.Log())
	}
	if st := statusOf(t, d.Path("v", "state")); st.Clean == nil || !*st.Clean {
		t.Errorf("the volume did not stop cleanly: %s", st.raw)
	}
	if b, err := os.ReadFile(filepath.Join(d.Path("v", "src"), "f")); err != nil || string(b) != "kept" {
		t.Errorf("source after the stop: %q, %v", b, err)
	}
}
