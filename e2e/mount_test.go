// Package e2e runs drfs end to end: it builds cmd/drfs, mounts it over
// temporary directories and drives it with real clients (posixtest, qemu-img,
// fio, ext4 on a loop device) and crash scenarios.
//
// Requirements (CI has them; a missing one is a test FAILURE, not a skip):
// root, /dev/fuse, loop devices, fuse3, qemu-utils, fio, e2fsprogs.
//
// DRFS_E2E_DAEMON=standin switches the daemon to the go-fuse loopback stand-in
// in internal/loopbackd (development only: it has no status/journal commands).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	binDir      string // built helper programs
	drfsBin     string
	standinBin  string
	crashWriter string
	buildErrs   []string
	repoRoot    string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	binDir, err = os.MkdirTemp("", "drfs-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: mkdtemp:", err)
		return 1
	}
	defer os.RemoveAll(binDir)
	repoRoot = findRepoRoot()
	build := func(out, pkg string) string {
		p := filepath.Join(binDir, out)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", p, pkg)
		cmd.Dir = repoRoot
		if o, err := cmd.CombinedOutput(); err != nil {
			buildErrs = append(buildErrs, fmt.Sprintf("go build %s: %v\n%s", pkg, err, o))
			return ""
		}
		return p
	}
	drfsBin = build("drfs", "drfs/cmd/drfs")
	crashWriter = build("crashwriter", "drfs/e2e/internal/crashwriter")
	if os.Getenv("DRFS_E2E_DAEMON") == "standin" {
		standinBin = build("loopbackd", "drfs/e2e/internal/loopbackd")
	}
	return m.Run()
}

func findRepoRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod)
		}
	}
	wd, _ := os.Getwd()
	return filepath.Dir(wd)
}

// requireBuilt fails the test if a helper binary could not be built.
func requireBuilt(t testing.TB, p, what string) {
	t.Helper()
	if p == "" {
		t.Fatalf("%s was not built:\n%s", what, strings.Join(buildErrs, "\n"))
	}
}

// daemonCommand is the single place that decides which binary mounts a
// volume and with what arguments.
func daemonCommand(t testing.TB, m *Mount) (string, []string) {
	t.Helper()
	if os.Getenv("DRFS_E2E_DAEMON") == "standin" {
		requireBuilt(t, standinBin, "the loopback stand-in")
		return standinBin, []string{"mount", "--source", m.Src, "--state", m.State, "--volume", m.Volume, m.Mnt}
	}
	requireBuilt(t, drfsBin, "drfs (cmd/drfs)")
	args := []string{"mount", "--source", m.Src, "--state", m.State, "--volume", m.Volume}
	args = append(args, m.Args...)
	return drfsBin, append(args, m.Mnt)
}

// requireTools fails (never skips) when a prerequisite is missing.
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("e2e tests must run as root (euid=%d)", os.Geteuid())
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse is required: %v", err)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("required tool %q not found in PATH (install it; see .ci): %v", tool, err)
		}
	}
}

// Mount is one running drfs volume.
type Mount struct {
	t      testing.TB
	Src    string
	State  string
	Mnt    string
	Volume string
	Logs   string   // directory for daemon logs, outside src/state/mnt
	Args   []string // extra `drfs mount` flags (replication); may be changed before Remount

	proc
	starts int
}

// scratchDir makes a directory on a disk file system (O_DIRECT does not
// work on tmpfs), removed at the end of the test.
func scratchDir(t testing.TB, prefix string) string {
	t.Helper()
	base := "/var/tmp"
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = os.TempDir()
	}
	d, err := os.MkdirTemp(base, prefix)
	if err != nil {
		t.Fatalf("mkdtemp: %v", err)
	}
	t.Cleanup(func() {
		if isMounted(d+"/mnt") || isMounted(d) {
			t.Errorf("scratch dir %s still has a mount; not removing", d)
			return
		}
		os.RemoveAll(d)
	})
	return d
}

// testMount creates src/state/mnt directories, mounts drfs and registers
// cleanup that stops the daemon and removes every mount.
func testMount(t testing.TB) *Mount {
	t.Helper()
	return testMountSrc(t, "")
}

// testMountSrc is testMount with the source directory at src (created if
// needed); "" means a fresh directory next to state and mnt.
func testMountSrc(t testing.TB, src string) *Mount {
	t.Helper()
	return testMountWith(t, MountOptions{Src: src})
}

// MountOptions configure testMountWith.
type MountOptions struct {
	Src     string           // source directory ("" = fresh directory next to state and mnt)
	Volume  string           // volume name ("" = "e2e")
	Args    []string         // extra `drfs mount` flags, e.g. --replica URL --insecure
	Prepare func(src string) // called with the source directory before the first mount
	State   string           // state directory ("" = fresh directory next to mnt), e.g. the
	// primary state that `drfs promote` prepared
}

// testMountWith is testMount with options.
func testMountWith(t testing.TB, o MountOptions) *Mount {
	t.Helper()
	requireTools(t, "umount")
	d := scratchDir(t, "drfs-e2e-")
	if o.Src == "" {
		o.Src = filepath.Join(d, "src")
	}
	if o.Volume == "" {
		o.Volume = "e2e"
	}
	if o.State == "" {
		o.State = filepath.Join(d, "state")
	}
	m := &Mount{
		t:      t,
		Src:    o.Src,
		State:  o.State,
		Mnt:    filepath.Join(d, "mnt"),
		Logs:   filepath.Join(d, "logs"),
		Volume: o.Volume,
		Args:   o.Args,
		proc:   proc{name: "daemon"},
	}
	for _, p := range []string{m.Src, m.State, m.Mnt, m.Logs} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(m.cleanup)
	if o.Prepare != nil {
		o.Prepare(m.Src)
	}
	m.start()
	return m
}

func (m *Mount) start() {
	m.t.Helper()
	if err := m.startErr(); err != nil {
		m.t.Fatal(err)
	}
}

// startErr starts the daemon and waits for the mount; it returns an error
// (with the daemon's output) when the daemon exits before mounting or does
// not mount within 10 s (then it is killed).
func (m *Mount) startErr() error {
	t := m.t
	t.Helper()
	if isMounted(m.Mnt) {
		return fmt.Errorf("start: %s is already mounted", m.Mnt)
	}
	bin, args := daemonCommand(t, m)
	m.starts++
	logPath := filepath.Join(m.Logs, fmt.Sprintf("daemon.%d.log", m.starts))
	if _, err := m.proc.start(exec.Command(bin, args...), logPath, ""); err != nil {
		return err
	}
	done := m.exited()
	deadline := time.Now().Add(10 * time.Second)
	for !isFuseMounted(m.Mnt) {
		select {
		case <-done:
			return fmt.Errorf("daemon exited before mounting (%v): %s %s\n--- daemon output ---\n%s",
				m.exitErr(), bin, strings.Join(args, " "), m.DaemonLog())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			how := "killed it"
			if err := m.kill(10 * time.Second); err != nil {
				how = err.Error()
			}
			forceUnmount(m.Mnt)
			return fmt.Errorf("%s not mounted 10s after starting %s %s (%s)\n--- daemon output ---\n%s",
				m.Mnt, bin, strings.Join(args, " "), how, m.DaemonLog())
		}
	}
	if info := mountPoints()[m.Mnt]; !strings.Contains(info, "allow_other") {
		return fmt.Errorf("%s is mounted without allow_other (mountinfo: %q); drfs must mount with allow_other", m.Mnt, info)
	}
	return nil
}

// DaemonLog returns the output of the current (or last) daemon.
func (m *Mount) DaemonLog() string { return m.Log() }

// logTail returns the last 16 KiB of a daemon's log file.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const max = 16 << 10
	if len(b) > max {
		return "...\n" + string(b[len(b)-max:])
	}
	return string(b)
}

// Stop sends SIGTERM and waits up to 10 s for a clean exit (status 0) that
// leaves nothing mounted. It fails the test otherwise; a daemon that does not
// exit is asked for a goroutine dump and killed (proc.stop).
func (m *Mount) Stop() {
	m.t.Helper()
	if err := m.stop(); err != nil {
		m.t.Fatalf("Stop: %v\n--- daemon output ---\n%s", err, m.DaemonLog())
	}
}

func (m *Mount) stop() error {
	if !m.Running() {
		err := fmt.Errorf("daemon not running (exit: %v)", m.exitErr())
		forceUnmount(m.Mnt)
		return err
	}
	var errs []error
	if err := m.proc.stop(10 * time.Second); err != nil {
		errs = append(errs, err)
	}
	if isMounted(m.Mnt) {
		errs = append(errs, fmt.Errorf("%s still mounted after the daemon exited", m.Mnt))
		forceUnmount(m.Mnt)
	}
	return errors.Join(errs...)
}

// Kill SIGKILLs the daemon (a crash) and lazily unmounts the dead mount.
func (m *Mount) Kill() {
	m.t.Helper()
	if !m.Running() {
		m.t.Fatalf("Kill: daemon not running (exit: %v)\n%s", m.exitErr(), m.DaemonLog())
	}
	if err := m.kill(10 * time.Second); err != nil {
		m.t.Fatalf("Kill: %v", err)
	}
	forceUnmount(m.Mnt)
	if isMounted(m.Mnt) {
		m.t.Fatalf("Kill: %s still mounted after lazy unmount", m.Mnt)
	}
}

// TryRemount starts the daemon again and returns an error instead of
// failing the test when it does not mount (e.g. a demoted state).
func (m *Mount) TryRemount() error {
	m.t.Helper()
	if m.Running() {
		return errors.New("TryRemount: daemon still running")
	}
	return m.startErr()
}

// Remount starts the daemon again on the same directories.
func (m *Mount) Remount() {
	m.t.Helper()
	if m.Running() {
		m.t.Fatalf("Remount: daemon still running")
	}
	m.start()
}

func (m *Mount) cleanup() {
	if m.Running() {
		if err := m.stop(); err != nil {
			if m.t.Failed() {
				m.t.Logf("cleanup: %v", err)
			} else {
				m.t.Errorf("cleanup: %v\n--- daemon output ---\n%s", err, m.DaemonLog())
			}
		}
	}
	forceUnmount(m.Mnt)
	if m.t.Failed() && m.logPath != "" {
		m.t.Logf("--- last daemon output (%s) ---\n%s", m.logPath, m.DaemonLog())
	}
}

// mountPoints maps mount points to "fstype superoptions" from /proc/self/mountinfo.
func mountPoints() map[string]string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	res := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		fstype := ""
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				fstype = fields[i+1]
				if i+3 < len(fields) {
					fstype += " " + fields[i+3] // super options
				}
				break
			}
		}
		res[unescapeMountinfo(fields[4])] = fstype
	}
	return res
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isMounted(p string) bool {
	_, ok := mountPoints()[p]
	return ok
}

func isFuseMounted(p string) bool {
	return strings.HasPrefix(mountPoints()[p], "fuse")
}

// forceUnmount lazily unmounts p (umount -l, then fusermount3 -uz).
func forceUnmount(p string) {
	for i := 0; i < 5 && isMounted(p); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if exec.CommandContext(ctx, "umount", "-l", p).Run() != nil {
			exec.CommandContext(ctx, "fusermount3", "-uz", p).Run()
		}
		cancel()
	}
}

// run executes a command with a timeout and returns its combined output.
func run(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	t.Logf("$ %s %s  (%v, err=%v)", name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err)
	return out.String(), err
}

// mustRun is run that fails the test on a non-zero exit.
func mustRun(t testing.TB, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := run(t, timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// Status is the output of `drfs status --json`.
type Status struct {
	Volume        string         `json:"volume"`
	Role          string         `json:"role"`
	Generation    uint64         `json:"generation"`
	JournalSeq    *uint64        `json:"journal_seq"`
	CheckpointSeq *uint64        `json:"checkpoint_seq"`
	DurableSeq    uint64         `json:"durable_seq"`
	JournalBytes  *uint64        `json:"journal_bytes"`
	Clean         *bool          `json:"clean"`
	Resync        []ResyncRegion `json:"resync"`
	// Replication (present when mounted with --replica).
	AckedSeq         uint64  `json:"acked_seq"`
	LagSeconds       float64 `json:"lag_seconds"`
	PendingBytes     int64   `json:"pending_bytes"`
	ReplicationState string  `json:"replication_state"`
	LastError        string  `json:"last_error"`
	Retries          int64   `json:"retries"`
	SyncDoneBytes    int64   `json:"sync_done_bytes"`
	SyncTotalBytes   int64   `json:"sync_total_bytes"`
	raw              string
}

type ResyncRegion struct {
	Path string `json:"path"`
	Off  int64  `json:"off"`
	Len  int64  `json:"len"`
}

// Status runs `drfs status --state STATE --json`.
func (m *Mount) Status() Status {
	t := m.t
	t.Helper()
	requireBuilt(t, drfsBin, "drfs (cmd/drfs)")
	out, err := run(t, 30*time.Second, drfsBin, "status", "--state", m.State, "--json")
	if err != nil {
		t.Fatalf("drfs status --json: %v\n%s", err, out)
	}
	var st Status
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &st); err != nil {
		t.Fatalf("drfs status --json: output is not one JSON object: %v\n%s", err, out)
	}
	st.raw = strings.TrimSpace(out)
	var missing []string
	if st.JournalSeq == nil {
		missing = append(missing, "journal_seq")
	}
	if st.CheckpointSeq == nil {
		missing = append(missing, "checkpoint_seq")
	}
	if st.JournalBytes == nil {
		missing = append(missing, "journal_bytes")
	}
	if st.Clean == nil {
		missing = append(missing, "clean")
	}
	if !strings.Contains(out, `"resync"`) {
		missing = append(missing, "resync")
	}
	if !strings.Contains(out, `"volume"`) {
		missing = append(missing, "volume")
	}
	if len(missing) > 0 {
		t.Fatalf("drfs status --json lacks fields %v:\n%s", missing, out)
	}
	return st
}

// Record is one line of `drfs journal dump`.
type Record struct {
	Seq  uint64 `json:"seq"`
	Type string `json:"type"`
	Path string `json:"path"`
	Off  int64  `json:"off"`
	Len  int64  `json:"len"`
}

// JournalDump runs `drfs journal dump --state STATE` (daemon must be stopped).
func (m *Mount) JournalDump() []Record {
	t := m.t
	t.Helper()
	requireBuilt(t, drfsBin, "drfs (cmd/drfs)")
	if m.Running() {
		t.Fatalf("JournalDump: daemon is running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, drfsBin, "journal", "dump", "--state", m.State)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("drfs journal dump --state %s: %v\nstderr: %s\nstdout (head): %.2000s", m.State, err, stderr.String(), out)
	}
	var recs []Record
	for i, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("drfs journal dump line %d is not JSON: %v\n%q", i+1, err, line)
		}
		recs = append(recs, r)
	}
	return recs
}

// goRoot returns the GOROOT of the go command on PATH (its source tree is a handy real tree).
func goRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return strings.TrimSpace(string(out))
}
