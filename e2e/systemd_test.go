package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The systemd contract of drfs daemon, as deploy/systemd/drfs.service relies on it: the test
// plays systemd's part of the notify protocol (sd_notify(3)) on a unixgram socket of its own.

// sdMessage is one assignment a daemon sent to NOTIFY_SOCKET, with the test's volumes that
// were mounted when it arrived.
type sdMessage struct {
	at      time.Time
	state   string          // READY=1, STATUS=..., WATCHDOG=1, ...
	mounted map[string]bool // volume name -> mounted when the message arrived
}

// sdNotify is the notify socket: it keeps every message.
type sdNotify struct {
	path string
	conn *net.UnixConn
	mnts map[string]string // volume name -> mountpoint

	mu   sync.Mutex
	msgs []sdMessage
}

func newSDNotify(t *testing.T, dir string, mnts map[string]string) *sdNotify {
	t.Helper()
	n := &sdNotify{path: filepath.Join(dir, "notify.sock"), mnts: mnts}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("notify socket: %v", err)
	}
	n.conn = conn
	t.Cleanup(func() { conn.Close() })
	go n.read()
	return n
}

func (n *sdNotify) read() {
	buf := make([]byte, 64<<10)
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			return
		}
		// Looked at as soon as it arrives: READY=1 must find the mounts already there.
		mp := mountPoints()
		mounted := map[string]bool{}
		for name, mnt := range n.mnts {
			mounted[name] = strings.HasPrefix(mp[mnt], "fuse.drfs")
		}
		now := time.Now()
		n.mu.Lock()
		for _, l := range strings.Split(strings.TrimSpace(string(buf[:k])), "\n") {
			n.msgs = append(n.msgs, sdMessage{at: now, state: l, mounted: mounted})
		}
		n.mu.Unlock()
	}
}

// mark returns the number of messages so far: waits after it see only newer ones.
func (n *sdNotify) mark() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.msgs)
}

// wait returns the index of the first message from index from on that match accepts, or
// fails the test after timeout.
func (n *sdNotify) wait(t *testing.T, d *sdDaemon, from int, timeout time.Duration, what string, match func(string) bool) (int, sdMessage) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n.mu.Lock()
		for i := from; i < len(n.msgs); i++ {
			if match(n.msgs[i].state) {
				m := n.msgs[i]
				n.mu.Unlock()
				return i, m
			}
		}
		n.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; messages since #%d:\n%s\n--- daemon output ---\n%s", what, timeout, from, n.dump(from), d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitState is wait for one exact assignment.
func (n *sdNotify) waitState(t *testing.T, d *sdDaemon, from int, timeout time.Duration, state string) (int, sdMessage) {
	t.Helper()
	return n.wait(t, d, from, timeout, state, func(s string) bool { return s == state })
}

// lastStatus returns the last STATUS= text received.
func (n *sdNotify) lastStatus() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := len(n.msgs) - 1; i >= 0; i-- {
		if s, ok := strings.CutPrefix(n.msgs[i].state, "STATUS="); ok {
			return s
		}
	}
	return ""
}

func (n *sdNotify) dump(from int) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	for i := from; i < len(n.msgs); i++ {
		fmt.Fprintf(&b, "  #%d %s %s %v\n", i, n.msgs[i].at.Format("15:04:05.000"), n.msgs[i].state, n.msgs[i].mounted)
	}
	return b.String()
}

// sdVolume is one volume of the test's configuration, each in its own scratch directory.
type sdVolume struct {
	name, src, state, mnt string
}

func newSDVolume(t *testing.T, name string) sdVolume {
	t.Helper()
	d := scratchDir(t, "drfs-e2e-sd-"+name+"-")
	v := sdVolume{name: name, src: filepath.Join(d, "src"), state: filepath.Join(d, "state"), mnt: filepath.Join(d, "mnt")}
	for _, p := range []string{v.src, v.state, v.mnt} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// sdHostConfig is the daemon's file for vols, its socket in dir.
func sdHostConfig(dir string, vols []sdVolume) string {
	var b strings.Builder
	fmt.Fprintf(&b, "socket: %s\nvolumes:\n", filepath.Join(dir, "drfs.sock"))
	for _, v := range vols {
		fmt.Fprintf(&b, "  - name: %s\n    source: %s\n    state: %s\n    mountpoint: %s\n", v.name, v.src, v.state, v.mnt)
	}
	return b.String()
}

// sdDaemon is drfs daemon started the way systemd starts it for drfs.service.
type sdDaemon struct {
	t *testing.T
	proc
}

// startSDDaemon starts drfs daemon --config file with NOTIFY_SOCKET and a 2 s WATCHDOG_USEC.
// Cleanup stops it and unmounts every volume, whatever the test did.
func startSDDaemon(t *testing.T, file string, n *sdNotify, logs string, vols []sdVolume) *sdDaemon {
	t.Helper()
	requireBuilt(t, drfsBin, "drfs (cmd/drfs)")
	d := &sdDaemon{t: t, proc: proc{name: "drfs daemon"}}
	cmd := exec.Command(drfsBin, "daemon", "--config", file)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+n.path, "WATCHDOG_USEC=2000000")
	if _, err := d.start(cmd, filepath.Join(logs, fmt.Sprintf("daemon.%d.log", time.Now().UnixNano())), ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.Running() {
			if err := d.stop(15 * time.Second); err != nil {
				if t.Failed() {
					t.Logf("cleanup: %v", err)
				} else {
					t.Errorf("cleanup: %v", err)
				}
			}
		}
		for _, v := range vols {
			forceUnmount(v.mnt)
		}
		if t.Failed() {
			t.Logf("--- drfs daemon output (%s) ---\n%s", d.logPath, d.Log())
		}
	})
	return d
}

// sdRequireWritable writes, fsyncs and reads back a file on a mounted volume.
func sdRequireWritable(t *testing.T, d *sdDaemon, v sdVolume, name string) {
	t.Helper()
	p := filepath.Join(v.mnt, name)
	data := []byte("written through drfs volume " + v.name + "\n")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err == nil {
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("volume %s is not writable: %v\n--- daemon output ---\n%s", v.name, err, d.Log())
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != string(data) {
		t.Fatalf("volume %s: read back %q, %v", v.name, got, err)
	}
}

// sdMountDev is the device of the file system mounted on mnt: a new mount has a new one.
func sdMountDev(t *testing.T, mnt string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); err != nil {
		t.Fatalf("stat %s: %v", mnt, err)
	}
	return st.Dev
}

// sdStop sends SIGTERM and checks the clean stop: STOPPING=1, exit status 0, nothing mounted.
func sdStop(t *testing.T, d *sdDaemon, n *sdNotify, vols []sdVolume) {
	t.Helper()
	from := n.mark()
	if err := d.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.waitState(t, d, from, 10*time.Second, "STOPPING=1")
	if err := d.exit(20 * time.Second); err != nil {
		t.Fatalf("drfs daemon after SIGTERM: %v, want exit status 0\n%s", err, d.Log())
	}
	for _, v := range vols {
		if isMounted(v.mnt) {
			t.Errorf("%s is still mounted after drfs daemon exited", v.mnt)
		}
	}
}

// sdSetup makes volumes named names, the daemon's file and the notify socket.
func sdSetup(t *testing.T, names ...string) (vols []sdVolume, file, logs string, n *sdNotify) {
	t.Helper()
	requireTools(t, "umount")
	dir := scratchDir(t, "drfs-e2e-sd-ctl-")
	mnts := map[string]string{}
	for _, name := range names {
		v := newSDVolume(t, name)
		vols = append(vols, v)
		mnts[name] = v.mnt
	}
	file = filepath.Join(dir, "drfs.yaml")
	if err := os.WriteFile(file, []byte(sdHostConfig(dir, vols)), 0o644); err != nil {
		t.Fatal(err)
	}
	return vols, file, dir, newSDNotify(t, dir, mnts)
}

// TestSystemd_NotifyContract: READY=1 once both volumes are mounted, STATUS= counts them,
// WATCHDOG=1 every WatchdogSec/2, SIGHUP and drfs reload are a RELOADING=1 ... READY=1
// pair, a refused file fails drfs reload (systemctl reload) and leaves both mounts alone,
// SIGTERM is STOPPING=1 and a clean exit with nothing mounted.
func TestSystemd_NotifyContract(t *testing.T) {
	vols, file, logs, n := sdSetup(t, "a", "b")
	d := startSDDaemon(t, file, n, logs, vols)

	_, ready := n.waitState(t, d, 0, 20*time.Second, "READY=1")
	for _, v := range vols {
		if !ready.mounted[v.name] {
			t.Errorf("READY=1 arrived before volume %s was mounted (%v)\n%s", v.name, ready.mounted, n.dump(0))
		}
	}
	// The last STATUS= is what systemctl status shows.
	if !waitFor(5*time.Second, func() bool { return n.lastStatus() == "2 of 2 volumes mounted" }) {
		t.Errorf("last STATUS=%q, want \"2 of 2 volumes mounted\"\n%s", n.lastStatus(), n.dump(0))
	}
	for _, v := range vols {
		sdRequireWritable(t, d, v, "before-reload")
	}

	// WATCHDOG_USEC=2 s: a keep-alive every second.
	from, start := n.mark(), time.Now()
	i, first := n.waitState(t, d, from, 3*time.Second, "WATCHDOG=1")
	_, second := n.waitState(t, d, i+1, 3*time.Second-time.Since(start), "WATCHDOG=1")
	t.Logf("WATCHDOG=1 %v apart", second.at.Sub(first.at).Round(time.Millisecond))

	devs := map[string]uint64{}
	for _, v := range vols {
		devs[v.name] = sdMountDev(t, v.mnt)
	}

	// SIGHUP, as systemctl kill -s HUP would.
	from = n.mark()
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	i, _ = n.waitState(t, d, from, 10*time.Second, "RELOADING=1")
	n.waitState(t, d, i+1, 10*time.Second, "READY=1")

	// drfs reload, the unit's ExecReload, of an unchanged file.
	from = n.mark()
	out, err := drfsCmd(t, 30*time.Second, "reload", "--config", file)
	if err != nil || !strings.Contains(out, "nothing changed") {
		t.Fatalf("drfs reload of an unchanged file: %v\n%s", err, out)
	}
	i, _ = n.waitState(t, d, from, 10*time.Second, "RELOADING=1")
	n.waitState(t, d, i+1, 10*time.Second, "READY=1")

	// A refused file: drfs reload fails with the file's line, the daemon runs on unchanged.
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(good), "\n")
	bad := strings.Join(lines[:3], "") + "    jounral-max: 1G\n" + strings.Join(lines[3:], "")
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = drfsCmd(t, 30*time.Second, "reload", "--config", file)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("drfs reload of a refused file: %v, want a non-zero exit\n%s", err, out)
	}
	if want := file + ":4: volumes[0].jounral-max: unknown field"; !strings.Contains(out, want) {
		t.Errorf("drfs reload of a refused file says:\n%s\nwant it to name %q", out, want)
	}
	for _, v := range vols {
		if !isFuseMounted(v.mnt) {
			t.Fatalf("volume %s is not mounted after a refused reload\n%s", v.name, d.Log())
		}
		if dev := sdMountDev(t, v.mnt); dev != devs[v.name] {
			t.Errorf("volume %s was mounted again by a refused reload (st_dev %d, was %d)", v.name, dev, devs[v.name])
		}
		sdRequireWritable(t, d, v, "after-refused-reload")
	}
	if !d.Running() {
		t.Fatalf("drfs daemon exited after a refused reload: %v\n%s", d.exitErr(), d.Log())
	}

	sdStop(t, d, n, vols)
}

// TestSystemd_BadVolumeAtStart: the second volume's source is missing. READY=1 still comes
// (systemd does not wait for it, nor fail the unit), the first volume is mounted and
// writable, STATUS= says which one is down, and the missing one comes up by itself once its
// source exists.
func TestSystemd_BadVolumeAtStart(t *testing.T) {
	vols, file, logs, n := sdSetup(t, "good", "bad")
	good, bad := vols[0], vols[1]
	if err := os.Remove(bad.src); err != nil {
		t.Fatal(err)
	}
	d := startSDDaemon(t, file, n, logs, vols)

	_, ready := n.waitState(t, d, 0, 20*time.Second, "READY=1")
	if !ready.mounted["good"] || ready.mounted["bad"] {
		t.Errorf("at READY=1 mounted: %v, want good only\n%s", ready.mounted, n.dump(0))
	}
	n.wait(t, d, 0, 10*time.Second, `STATUS= "1 of 2 volumes mounted; bad restarting"`, func(s string) bool {
		return s == "STATUS=1 of 2 volumes mounted; bad restarting"
	})
	sdRequireWritable(t, d, good, "while-bad-is-down")
	if isMounted(bad.mnt) {
		t.Fatalf("volume bad is mounted without a source")
	}

	// The daemon tries again after 1 s, 2 s, 4 s ...: the next try finds the source.
	created := time.Now()
	if err := os.Mkdir(bad.src, 0o755); err != nil {
		t.Fatal(err)
	}
	if !waitFor(15*time.Second, func() bool { return isFuseMounted(bad.mnt) }) {
		t.Fatalf("volume bad not mounted 15 s after its source was created\n%s\n%s", n.dump(0), d.Log())
	}
	t.Logf("volume bad mounted %v after its source was created", time.Since(created).Round(time.Millisecond))
	if !waitFor(5*time.Second, func() bool { return n.lastStatus() == "2 of 2 volumes mounted" }) {
		t.Errorf("last STATUS=%q, want \"2 of 2 volumes mounted\"\n%s", n.lastStatus(), n.dump(0))
	}
	sdRequireWritable(t, d, bad, "came-up")
	sdRequireWritable(t, d, good, "still-up")

	sdStop(t, d, n, vols)
}

// TestSystemd_RestartAfterWatchdogAbort: systemd's watchdog aborts a hung daemon (SIGABRT)
// and Restart=on-failure starts it again. The dead FUSE mounts the aborted daemon left must
// not keep the new one from mounting, and every write that returned before is there.
func TestSystemd_RestartAfterWatchdogAbort(t *testing.T) {
	vols, file, logs, n := sdSetup(t, "a", "b")
	d := startSDDaemon(t, file, n, logs, vols)
	n.waitState(t, d, 0, 20*time.Second, "READY=1")
	for _, v := range vols {
		sdRequireWritable(t, d, v, "before-abort")
	}

	if err := d.Signal(syscall.SIGABRT); err != nil {
		t.Fatal(err)
	}
	if err := d.exit(10 * time.Second); err == nil {
		t.Fatalf("drfs daemon exited 0 after SIGABRT, want a failure (systemd restarts on it)")
	}
	for _, v := range vols {
		// What the restarted daemon finds: a dead mount (statfs asks the daemon, always).
		if err := syscall.Statfs(v.mnt, &syscall.Statfs_t{}); !errors.Is(err, syscall.ENOTCONN) {
			t.Fatalf("after SIGABRT, statfs %s: %v, want the dead mount's ENOTCONN", v.mnt, err)
		}
	}

	from := n.mark()
	d = startSDDaemon(t, file, n, logs, vols)
	_, ready := n.waitState(t, d, from, 20*time.Second, "READY=1")
	for _, v := range vols {
		if !ready.mounted[v.name] {
			t.Errorf("restarted daemon: READY=1 without volume %s mounted\n%s\n%s", v.name, n.dump(from), d.Log())
		}
	}
	if !waitFor(5*time.Second, func() bool { return n.lastStatus() == "2 of 2 volumes mounted" }) {
		t.Fatalf("restarted daemon: last STATUS=%q, want \"2 of 2 volumes mounted\"\n%s", n.lastStatus(), n.dump(from))
	}
	for _, v := range vols {
		want := "written through drfs volume " + v.name + "\n"
		if got, err := os.ReadFile(filepath.Join(v.mnt, "before-abort")); err != nil || string(got) != want {
			t.Errorf("volume %s after the restart: %q, %v; want %q", v.name, got, err, want)
		}
		sdRequireWritable(t, d, v, "after-restart")
	}

	sdStop(t, d, n, vols)
}
