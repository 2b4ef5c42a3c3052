package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs scripts/demo.sh (what `make demo` runs after installing its
// packages) with the test's drfs binary, so the quick start cannot rot: every
// step of the story must happen and the script must clean up after itself.
// It takes about a minute (four TCG boots of the demo's guest).
func TestDemo(t *testing.T) {
	requireTools(t, "bash", "qemu-img", "qemu-system-x86_64", "busybox", "cpio", "mountpoint", "python3")
	requireBuilt(t, drfsBin, "drfs (cmd/drfs)")
	if _, err := os.Stat("/var/cache/drfs-demo/guest-kernel/vmlinuz"); err != nil {
		t.Fatalf("the demo guest's kernel is missing (run scripts/deps.sh): %v", err)
	}
	parent := scratchDir(t, "drfs-e2e-demo-")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, "scripts/demo.sh"))
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "DRFS="+drfsBin, "DEMO_DIR="+parent)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// On timeout: SIGTERM lets the script stop its daemons and unmount.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 45 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t.Cleanup(func() {
		// Whatever is left of the script's process group (it never outlives a
		// passing run).
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		for p := range mountPoints() {
			if strings.HasPrefix(p, parent+"/") {
				exec.Command("umount", "-l", p).Run()
			}
		}
	})
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	t.Logf("scripts/demo.sh took %v:\n%s", took.Round(time.Second), out.String())
	if err != nil {
		t.Fatalf("scripts/demo.sh: %v", err)
	}

	s := out.String()
	for _, want := range []string{
		"drfs certs request --out hq/certs --site hq",
		"drfs certs sign --ca dr/certs --site hq",
		"allow: hq",
		"drfs daemon --config hq/drfs.yaml",
		"removed    vms",
		"added      vms",
		"untouched  build",
		"guests were paused for ",
		"(needed 1..", // the guest found every record it synced before the planned failover
		"dr -> hq: ",
		"hq -> dr: ",
		"drfs promote --dir dr/replica2 --volume vms --force",
		"No errors were found on the image.",
		"replication  fenced",
		"demo OK in ",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(s, "CHECK FAILED") {
		t.Errorf("a guest's check failed")
	}
	for p := range mountPoints() {
		if strings.HasPrefix(p, parent+"/") {
			t.Errorf("the demo left %s mounted", p)
		}
	}
	if ls, _ := filepath.Glob(filepath.Join(parent, "drfs-demo.*")); len(ls) != 0 {
		t.Errorf("the demo left its scratch directory: %v", ls)
	}
	if took > 3*time.Minute {
		t.Errorf("the demo took %v; it is meant to take under two minutes", took.Round(time.Second))
	}
}
