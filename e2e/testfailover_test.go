package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A test failover mounts a writable clone of a recovery point while replication goes on;
// writes to the clone reach neither the replica nor the primary, and --cleanup removes it.
func TestFailover_TestFailoverClone(t *testing.T) {
	requireTools(t)
	r := startReplica(t, "", "")
	m := testMountWith(t, MountOptions{Volume: "tf", Args: r.MountArgs("--interval", "continuous")})
	a1, a2, a3 := randBytes(11, 1<<20), randBytes(12, 1<<20), randBytes(13, 1<<20)
	mustWriteFile(t, filepath.Join(m.Mnt, "a"), a1, 0o644)
	point := m.Sync(time.Minute)
	mustWriteFile(t, filepath.Join(m.Mnt, "a"), a2, 0o644)
	m.Sync(time.Minute)

	mnt := filepath.Join(scratchDir(t, "drfs-e2e-tf-"), "mnt")
	os.MkdirAll(mnt, 0o755)
	cmd := exec.Command(drfsBin, "test-failover", "--dir", r.Dir, "--volume", "tf", "--point", strconv.FormatUint(point, 10), "--mount", mnt)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if isMounted(mnt) {
			run(t, 10*time.Second, "umount", "-l", mnt)
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(20 * time.Second)
	for !isMounted(mnt) {
		if time.Now().After(deadline) {
			t.Fatalf("test failover did not mount:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "a"))
	if err != nil || !bytes.Equal(got, a1) {
		t.Fatalf("the clone of point %d does not hold that point's data (err %v)", point, err)
	}
	mustWriteFile(t, filepath.Join(mnt, "scratch"), []byte("test only"), 0o644)
	// Replication goes on meanwhile.
	mustWriteFile(t, filepath.Join(m.Mnt, "a"), a3, 0o644)
	m.Sync(time.Minute)
	if got, _ := os.ReadFile(filepath.Join(r.DataDir("tf"), "a")); !bytes.Equal(got, a3) {
		t.Fatal("replication stopped during the test failover")
	}
	for _, p := range []string{filepath.Join(r.DataDir("tf"), "scratch"), filepath.Join(m.Src, "scratch")} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("a write to the test clone reached %s", p)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(mnt, "a")); !bytes.Equal(got, a1) {
		t.Fatal("replication changed the test clone")
	}
	if _, err := run(t, time.Minute, drfsBin, "test-failover", "--dir", r.Dir, "--volume", "tf", "--cleanup"); err == nil {
		t.Fatal("--cleanup removed a clone that is still mounted")
	}
	stop()
	mustRun(t, time.Minute, drfsBin, "test-failover", "--dir", r.Dir, "--volume", "tf", "--cleanup")
	if _, err := os.Stat(filepath.Join(r.Dir, "tf", "test-failover")); err == nil {
		t.Fatal("--cleanup left the clone behind")
	}
	audit := mustRun(t, time.Minute, drfsBin, "audit", "--dir", r.Dir, "--volume", "tf", "--json")
	if !strings.Contains(audit, `"action":"test-failover"`) || !strings.Contains(audit, `"action":"test-failover-cleanup"`) {
		t.Fatalf("audit log lacks the test failover:\n%s", audit)
	}
}

// Files larger than 4 GiB work through the mount and their writes are journaled at the
// right offsets.
func TestMount_LargeFile(t *testing.T) {
	m := testMount(t)
	p := filepath.Join(m.Mnt, "big.raw")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	const off = 5<<30 + 12345
	data := randBytes(77, 1<<20)
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, off); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back at 5 GiB: %v", err)
	}
	fi, _ := f.Stat()
	f.Close()
	if fi.Size() != off+int64(len(data)) {
		t.Fatalf("size %d, want %d", fi.Size(), off+len(data))
	}
	m.Stop()
	src, err := os.ReadFile(filepath.Join(m.Src, "big.raw"))
	if err != nil || int64(len(src)) != off+int64(len(data)) || !bytes.Equal(src[off:], data) {
		t.Fatalf("source file wrong after stop (err %v, len %d)", err, len(src))
	}
	dump := mustRun(t, time.Minute, drfsBin, "journal", "dump", "--state", m.State)
	if !strings.Contains(dump, `"path":"big.raw"`) || !strings.Contains(dump, `"off":`+strconv.Itoa(off)) {
		t.Fatalf("no write record at offset %d in the journal:\n%s", off, dump)
	}
}

// Without --force, promote asks a primary that is still in contact to hand over: it ships its
// last log and promotes the replica itself (a planned failover), so nothing is lost.
func TestFailover_PromoteAsksPrimaryToHandOver(t *testing.T) {
	requireTools(t)
	r := startReplica(t, "", "")
	m := testMountWith(t, MountOptions{Volume: "handover", Args: r.MountArgs("--interval", "1h")})
	data := randBytes(21, 2<<20)
	mustWriteFile(t, filepath.Join(m.Mnt, "disk.raw"), data, 0o644)
	m.Sync(time.Minute)
	// Written after the last cycle, with a one-hour interval: only the hand-over ships it.
	late := randBytes(22, 64<<10)
	f, err := os.OpenFile(filepath.Join(m.Mnt, "disk.raw"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(late, 1<<20)
	f.Close()
	copy(data[1<<20:], late)

	out := mustRun(t, 2*time.Minute, drfsBin, "promote", "--dir", r.Dir, "--volume", "handover")
	if !strings.Contains(out, "handed over") {
		t.Fatalf("promote without --force did not report a hand-over:\n%s", out)
	}
	got, err := os.ReadFile(filepath.Join(r.DataDir("handover"), "disk.raw"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the promoted replica lacks the primary's last writes (err %v)", err)
	}
	if st := m.Status(); st.ReplicationState != "demoted" {
		t.Fatalf("old primary state %q, want demoted", st.ReplicationState)
	}
	if err := os.WriteFile(filepath.Join(m.Mnt, "after"), []byte("x"), 0o644); err == nil {
		t.Fatal("the demoted primary still accepts writes")
	}
	audit := mustRun(t, time.Minute, drfsBin, "audit", "--dir", r.Dir, "--volume", "handover", "--json")
	if !strings.Contains(audit, `"action":"failover"`) || strings.Contains(audit, `"forced":true`) {
		t.Fatalf("audit log does not show an unforced hand-over:\n%s", audit)
	}
}
