package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// LazyFS (github.com/dsrhaslab/lazyfs) is a FUSE file system with its own page cache that
// writes data to the directory beneath it only on fsync; "lazyfs::clear-cache" written to
// its fault FIFO drops every byte not fsynced since: a power loss of that disk alone.
//
// Its sources sit in the shared tools directory beside the checkout
// (<repo>/../shared/tools/lazyfs, build.sh and tarballs, no network); it is built once into
// a cache directory outside the repository. A missing tools directory, compiler or FUSE
// library is a test failure: scripts/deps.sh installs the Debian packages.

var (
	lazyfsOnce sync.Once
	lazyfsPath string
	lazyfsErr  error
)

// lazyfsCacheDir is where LazyFS is built: $DRFS_TEST_CACHE/lazyfs, else
// /var/cache/drfs-test/lazyfs (the tests run as root).
func lazyfsCacheDir() string {
	if d := os.Getenv("DRFS_TEST_CACHE"); d != "" {
		return filepath.Join(d, "lazyfs")
	}
	return "/var/cache/drfs-test/lazyfs"
}

// requireLazyFS returns the LazyFS binary, building it on first use; it fails the test when
// it cannot.
func requireLazyFS(t testing.TB) string {
	t.Helper()
	requireTools(t, "fusermount3", "cmake", "g++")
	lazyfsOnce.Do(func() { lazyfsPath, lazyfsErr = buildLazyFS() })
	if lazyfsErr != nil {
		t.Fatalf("LazyFS: %v", lazyfsErr)
	}
	return lazyfsPath
}

func buildLazyFS() (string, error) {
	tools := filepath.Join(filepath.Dir(repoRoot), "shared", "tools", "lazyfs")
	script := filepath.Join(tools, "build.sh")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("the LazyFS sources are expected in %s (the shared tools directory beside the checkout): %v", tools, err)
	}
	if _, err := os.Stat("/usr/include/fuse3/fuse.h"); err != nil {
		return "", fmt.Errorf("libfuse3-dev is not installed (run scripts/deps.sh): %v", err)
	}
	out := lazyfsCacheDir()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	// Concurrent test runs on one machine share the cache: one builds, the others wait.
	lock, err := os.OpenFile(filepath.Join(out, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", out, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	cmd := exec.Command("bash", script, out)
	o, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", script, out, err, o)
	}
	lines := strings.Split(strings.TrimSpace(string(o)), "\n")
	bin := lines[len(lines)-1]
	if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s printed %q, not an executable LazyFS binary (%v)", script, bin, err)
	}
	return bin, nil
}

// LazyFS is one running LazyFS instance: Mnt shows Root through LazyFS's cache.
type LazyFS struct {
	t    testing.TB
	bin  string
	Mnt  string
	Root string // backing directory: what survives a power loss
	dir  string // config, FIFO and logs

	fifo    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	starts  int
	clears  int // "cache is cleared" lines expected in the current log
	Crashes int // power losses injected
}

// startLazyFS mounts a fresh LazyFS instance under a scratch directory and unmounts it at
// cleanup (register it before anything that runs on top of it).
func startLazyFS(t testing.TB, name string) *LazyFS {
	t.Helper()
	return startLazyFSOn(t, name, "")
}

// startLazyFSOn is startLazyFS over the directory root ("" = a fresh scratch directory).
func startLazyFSOn(t testing.TB, name, root string) *LazyFS {
	t.Helper()
	bin := requireLazyFS(t)
	d := scratchDir(t, "drfs-e2e-lazyfs-"+name+"-")
	if root == "" {
		root = filepath.Join(d, "root")
	}
	l := &LazyFS{t: t, bin: bin, Mnt: filepath.Join(d, "mnt"), Root: root, dir: filepath.Join(d, "ctl")}
	for _, p := range []string{l.Mnt, l.Root, l.dir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l.fifo = filepath.Join(l.dir, "faults.fifo")
	conf := fmt.Sprintf(`[faults]
fifo_path=%q

[cache]
apply_eviction=false

[cache.simple]
custom_size="1gb"
blocks_per_page=1

[filesystem]
log_all_operations=false
logfile=""
`, l.fifo)
	if err := os.WriteFile(filepath.Join(l.dir, "lazyfs.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.cleanup)
	l.start()
	return l
}

func (l *LazyFS) start() {
	t := l.t
	t.Helper()
	l.starts++
	l.clears = 0
	l.logPath = filepath.Join(l.dir, fmt.Sprintf("lazyfs.%d.log", l.starts))
	logf, err := os.Create(l.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(l.bin, l.Mnt, "--config-path", filepath.Join(l.dir, "lazyfs.toml"),
		"-o", "allow_other", "-o", "modules=subdir", "-o", "subdir="+l.Root, "-f")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start LazyFS: %v", err)
	}
	done := make(chan struct{})
	l.cmd, l.done = cmd, done
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	ok := waitFor(10*time.Second, func() bool {
		select {
		case <-done:
			return true
		default:
		}
		return isFuseMounted(l.Mnt) && strings.Contains(logTail(l.logPath), "waiting for fault commands")
	})
	select {
	case <-done:
		t.Fatalf("LazyFS exited before mounting %s:\n%s", l.Mnt, logTail(l.logPath))
	default:
	}
	if !ok {
		l.kill()
		t.Fatalf("LazyFS did not mount %s within 10s:\n%s", l.Mnt, logTail(l.logPath))
	}
}

// PowerLoss drops every byte written through Mnt and not fsynced since, then unmounts and
// mounts LazyFS again (the machine comes back: no kernel page cache of the old mount
// survives). Whatever runs on Mnt must be stopped first.
func (l *LazyFS) PowerLoss() {
	t := l.t
	t.Helper()
	f, err := os.OpenFile(l.fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open LazyFS fault FIFO: %v", err)
	}
	_, err = f.WriteString("lazyfs::clear-cache\n")
	f.Close()
	if err != nil {
		t.Fatalf("write LazyFS fault FIFO: %v", err)
	}
	l.clears++
	if !waitFor(20*time.Second, func() bool {
		return strings.Count(logTail(l.logPath), "cache is cleared") >= l.clears
	}) {
		t.Fatalf("LazyFS did not report \"cache is cleared\" within 20s:\n%s", logTail(l.logPath))
	}
	l.Crashes++
	l.kill()
	l.start()
}

// kill unmounts LazyFS (lazily: a dead drfs may still hold files) and ends the process.
func (l *LazyFS) kill() {
	select {
	case <-l.done:
	default:
		syscall.Kill(-l.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-l.done:
		case <-time.After(10 * time.Second):
			l.t.Errorf("LazyFS pid %d did not die within 10s of SIGKILL", l.cmd.Process.Pid)
		}
	}
	forceUnmount(l.Mnt)
}

func (l *LazyFS) cleanup() {
	if l.cmd == nil {
		return
	}
	l.kill()
	if isMounted(l.Mnt) {
		l.t.Errorf("LazyFS %s still mounted at cleanup", l.Mnt)
	}
	if l.t.Failed() {
		l.t.Logf("--- LazyFS output (%s) ---\n%s", l.logPath, logTail(l.logPath))
	}
}
