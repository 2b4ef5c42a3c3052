package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The paths the shipped units name; make install rewrites binPath for another PREFIX.
const (
	binPath    = "/usr/local/bin/drfs"
	configPath = "/etc/drfs/drfs.yaml"
)

// unitFile is a parsed systemd unit: section -> key -> every value assigned, in order.
type unitFile map[string]map[string][]string

// parseUnit reads the subset of systemd.syntax(7) the units use: sections, key=value lines,
// comments starting with # or ;, and backslash continuations.
func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	n, cont := 0, ""
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		if cont != "" {
			l, cont = cont+" "+l, ""
		}
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		if strings.HasSuffix(l, `\`) {
			cont = strings.TrimSuffix(l, `\`)
			continue
		}
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			section = l[1 : len(l)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, l)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one returns the single value of key, failing when it is missing or given twice.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Errorf("[%s] %s: got %q, want exactly one value", section, key, vs)
		return ""
	}
	return vs[0]
}

// words returns every space-separated word of every value of key (After=, Before=, ...).
func (u unitFile) words(section, key string) []string {
	var w []string
	for _, v := range u[section][key] {
		w = append(w, strings.Fields(v)...)
	}
	return w
}

// units returns the unit files shipped in systemd/.
func units(t *testing.T) []string {
	t.Helper()
	us, err := filepath.Glob("systemd/*.service")
	if err != nil {
		t.Fatal(err)
	}
	if len(us) == 0 {
		t.Fatal("no unit files in systemd/")
	}
	return us
}

// buildDrfs builds cmd/drfs into a temporary directory and returns its path.
func buildDrfs(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "drfs")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/drfs")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ../cmd/drfs: %v\n%s", err, out)
	}
	return bin
}

// TestUnits_Verify runs systemd-analyze verify on every unit, as installed with the binary
// where it really is (verify fails on an Exec line whose program does not exist). verify
// exits 0 on a misspelt key or value and only prints it, so any line about the unit fails.
// It needs no running systemd. systemd-analyze is Debian's systemd package
// (scripts/deps.sh installs it); a missing one is a failure, not a skip.
func TestUnits_Verify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (scripts/deps.sh installs it: apt-get install systemd): %v", err)
	}
	bin := buildDrfs(t)
	dir := t.TempDir()
	for _, unit := range units(t) {
		t.Run(filepath.Base(unit), func(t *testing.T) {
			b, err := os.ReadFile(unit)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(b, []byte(binPath)) {
				t.Fatalf("%s does not run %s (make install rewrites that path for PREFIX)", unit, binPath)
			}
			p := filepath.Join(dir, filepath.Base(unit))
			if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte(binPath), []byte(bin)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", "--man=no", p).CombinedOutput()
			var about []string
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if strings.Contains(l, filepath.Base(unit)) {
					about = append(about, l)
				} else if l != "" {
					t.Logf("systemd-analyze (not about this unit): %s", l)
				}
			}
			if err != nil || len(about) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, strings.Join(about, "\n"))
			}
		})
	}
}

// namespaced are the settings that give a service its own mount namespace (or need one):
// the daemon's FUSE mounts would then exist only there, invisible to the hypervisor.
var namespaced = []string{
	"PrivateTmp", "PrivateDevices", "PrivateNetwork", "PrivateMounts", "PrivateUsers", "PrivateIPC",
	"ProtectSystem", "ProtectHome", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
	"ProtectControlGroups", "ProtectClock", "ProtectHostname", "ProtectProc", "ProcSubset",
	"ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths",
	"TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths", "RootDirectory", "RootImage",
	"MountFlags", "MountAPIVFS", "NetworkNamespacePath", "DynamicUser", "JoinsNamespaceOf",
	"ReadOnlyDirectories", "ReadWriteDirectories", "InaccessibleDirectories",
}

// TestUnit_DaemonContract checks what drfs.service promises the operator beyond syntax:
// notify with the watchdog, reload through drfs reload, SIGTERM to the daemon alone, the
// order against the hypervisor, and the host's mount namespace.
func TestUnit_DaemonContract(t *testing.T) {
	u := parseUnit(t, "systemd/drfs.service")
	svc := func(key, want string) {
		t.Helper()
		if got := u.one(t, "Service", key); got != want {
			t.Errorf("[Service] %s=%s, want %s", key, got, want)
		}
	}
	svc("Type", "notify")
	svc("NotifyAccess", "main")
	svc("ExecStart", binPath+" daemon --config "+configPath)
	svc("ExecStartPre", binPath+" daemon --check --config "+configPath)
	svc("ExecReload", binPath+" reload --config "+configPath)
	svc("Restart", "on-failure")
	svc("KillMode", "mixed")
	atLeast := func(key string, min time.Duration) {
		t.Helper()
		v := u.one(t, "Service", key)
		d, err := time.ParseDuration(strings.ReplaceAll(v, "min", "m"))
		if err != nil || d < min {
			t.Errorf("[Service] %s=%s, want a duration of at least %v", key, v, min)
		}
	}
	atLeast("WatchdogSec", 10*time.Second)
	atLeast("TimeoutStartSec", 10*time.Minute) // journal replay comes before READY=1
	atLeast("TimeoutStopSec", time.Minute)     // a clean unmount checkpoints every volume
	if v := u.one(t, "Service", "LimitNOFILE"); v != "infinity" {
		if n, err := strconv.Atoi(v); err != nil || n < 65536 {
			t.Errorf("[Service] LimitNOFILE=%s, want at least 65536", v)
		}
	}
	for _, want := range []struct{ key, unit string }{
		{"After", "network-online.target"}, {"After", "local-fs.target"},
		{"Wants", "network-online.target"},
		{"Before", "libvirtd.service"}, {"Before", "libvirt-guests.service"},
	} {
		if !slices.Contains(u.words("Unit", want.key), want.unit) {
			t.Errorf("[Unit] %s= does not name %s", want.key, want.unit)
		}
	}
	if !slices.Contains(u.words("Install", "WantedBy"), "multi-user.target") {
		t.Errorf("[Install] WantedBy= does not name multi-user.target")
	}
	for _, key := range append(namespaced, "User", "Group") {
		if vs := u["Service"][key]; len(vs) > 0 {
			t.Errorf("[Service] %s=%s: the daemon must run as root in the host's mount namespace (its FUSE mounts are for the hypervisor)", key, vs[0])
		}
	}
}

// TestExampleConfig_Check runs the unit's own ExecStartPre check on the example
// configuration that make install puts in /etc/drfs.
func TestExampleConfig_Check(t *testing.T) {
	pre := parseUnit(t, "systemd/drfs.service").one(t, "Service", "ExecStartPre")
	args := strings.Fields(strings.ReplaceAll(pre, configPath, "drfs/drfs.yaml"))
	if len(args) == 0 || args[0] != binPath {
		t.Fatalf("ExecStartPre=%s does not run %s", pre, binPath)
	}
	args[0] = buildDrfs(t)
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("%s", out)
}
