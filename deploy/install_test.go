package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// makeIn runs make TARGET VARS... in the repository root and returns its output. A fake
// systemctl first on PATH records every call in calls: with DESTDIR set, make install must
// not tell the running systemd about units that are not in its /etc.
func makeIn(t *testing.T, calls string, args ...string) string {
	t.Helper()
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skipf("make not found: %v", err)
	}
	fake := filepath.Join(t.TempDir(), "systemctl")
	script := "#!/bin/sh\necho \"systemctl $*\" >>" + calls + "\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mk, append([]string{"-C", ".."}, args...)...)
	// Not the jobserver of a make test above this test.
	env := []string{"PATH=" + filepath.Dir(fake) + ":" + os.Getenv("PATH")}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != "PATH" && k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// execLines returns the Exec*= lines of a unit file.
func execLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ls []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Exec") {
			ls = append(ls, l)
		}
	}
	return ls
}

// TestInstall_DESTDIR installs into a temporary root twice, the second time with another
// PREFIX over an operator's edited configuration, then uninstalls.
func TestInstall_DESTDIR(t *testing.T) {
	tmp := t.TempDir()
	root, bin, calls := filepath.Join(tmp, "root"), filepath.Join(tmp, "bin"), filepath.Join(tmp, "systemctl.calls")
	vars := []string{"DESTDIR=" + root, "BIN=" + bin}

	out := makeIn(t, calls, append([]string{"install"}, vars...)...)
	t.Logf("make install:\n%s", out)
	if st, err := os.Stat(filepath.Join(root, "usr/local/bin/drfs")); err != nil || st.Mode().Perm()&0o111 == 0 {
		t.Fatalf("binary not installed as an executable in $DESTDIR/usr/local/bin: %v", err)
	}
	shipped := units(t)
	for _, unit := range shipped {
		p := filepath.Join(root, "etc/systemd/system", filepath.Base(unit))
		ls := execLines(t, p)
		if len(ls) == 0 {
			t.Errorf("%s: no Exec lines", p)
		}
		for _, l := range ls {
			if !strings.Contains(l, "=/usr/local/bin/drfs ") {
				t.Errorf("%s: %s does not run /usr/local/bin/drfs", p, l)
			}
		}
	}
	confs, err := filepath.Glob("drfs/*.yaml")
	if err != nil || len(confs) == 0 {
		t.Fatalf("no example configuration in drfs/: %v", err)
	}
	for _, c := range confs {
		want, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, "etc/drfs", filepath.Base(c)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("/etc/drfs/%s is not the example %s: %v", filepath.Base(c), c, err)
		}
	}
	if !strings.Contains(out, "systemctl enable --now drfs") {
		t.Errorf("make install does not say what to do next")
	}

	// The operator edits the configuration; a reinstall (here with another PREFIX) keeps it.
	conf := filepath.Join(root, "etc/drfs/drfs.yaml")
	mine := []byte("# the operator's own file\nvolumes: []\n")
	if err := os.WriteFile(conf, mine, 0o600); err != nil {
		t.Fatal(err)
	}
	out = makeIn(t, calls, append([]string{"install", "PREFIX=/opt/drfs"}, vars...)...)
	t.Logf("make install PREFIX=/opt/drfs:\n%s", out)
	if got, err := os.ReadFile(conf); err != nil || !bytes.Equal(got, mine) {
		t.Errorf("a second make install replaced the operator's %s: got %q, %v", conf, got, err)
	}
	if !strings.Contains(out, "kept "+conf) {
		t.Errorf("make install does not say it kept %s", conf)
	}
	if _, err := os.Stat(filepath.Join(root, "opt/drfs/bin/drfs")); err != nil {
		t.Errorf("PREFIX=/opt/drfs: %v", err)
	}
	for _, unit := range shipped {
		p := filepath.Join(root, "etc/systemd/system", filepath.Base(unit))
		for _, l := range execLines(t, p) {
			if !strings.Contains(l, "=/opt/drfs/bin/drfs ") || strings.Contains(l, "/usr/local") {
				t.Errorf("PREFIX=/opt/drfs: %s: %s", p, l)
			}
		}
	}

	out = makeIn(t, calls, append([]string{"uninstall", "PREFIX=/opt/drfs"}, vars...)...)
	t.Logf("make uninstall PREFIX=/opt/drfs:\n%s", out)
	gone := []string{"opt/drfs/bin/drfs"}
	for _, unit := range shipped {
		gone = append(gone, filepath.Join("etc/systemd/system", filepath.Base(unit)))
	}
	for _, p := range gone {
		if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("make uninstall left $DESTDIR/%s (%v)", p, err)
		}
	}
	if got, err := os.ReadFile(conf); err != nil || !bytes.Equal(got, mine) {
		t.Errorf("make uninstall touched the configuration %s: %q, %v", conf, got, err)
	}
	if b, err := os.ReadFile(calls); err == nil {
		t.Errorf("make with DESTDIR called systemctl:\n%s", b)
	}
}
