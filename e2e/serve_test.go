package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeServeConfig writes r's configuration file: its directory, address and metrics, its
// certificates (or insecure), and rest (retention and volumes).
func writeServeConfig(t *testing.T, r *Replica, listen, rest string) {
	t.Helper()
	head := fmt.Sprintf("dir: %s\nlisten: %s\nmetrics:\n  listen: %s\n", r.Dir, listen, r.Metrics)
	if r.Certs != "" {
		head += "certs: " + r.Certs + "\n"
	} else {
		head += "insecure: true\n"
	}
	if err := os.WriteFile(r.Config, []byte(head+rest), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until drfs serve's log holds want n times, failing the test after 15 s.
func (r *Replica) waitLog(want string, n int) {
	r.t.Helper()
	if !waitFor(15*time.Second, func() bool { return strings.Count(r.Log(), want) >= n }) {
		r.t.Fatalf("drfs serve did not log %q (%d times) within 15s:\n%s", want, n, r.Log())
	}
}

// TestServe_ConfigProblemsStartNothing: a file with problems is refused whole at start:
// every problem is printed as file:line: field: message, the exit status is not 0, and
// nothing listens or is created.
func TestServe_ConfigProblemsStartNothing(t *testing.T) {
	requireTools(t)
	d := scratchDir(t, "drfs-e2e-serveconf-")
	file, dir, addr := filepath.Join(d, "serve.yaml"), filepath.Join(d, "replica"), freeAddr(t)
	text := "dir: " + dir + "\nlisten: " + addr + "\ninsecure: true\nkeep-points: 0\n" +
		"volumes:\n  - name: erp\n    allow: HQ\n    keep-for: a week\n  - name: erp\n"
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := drfsCmd(t, 20*time.Second, "serve", "--config", file)
	if err == nil {
		t.Fatalf("drfs serve started with a broken file:\n%s", out)
	}
	for _, want := range []string{
		"4 problems in the configuration, nothing was started",
		file + `:4: keep-points: "0": want a whole number from 1 to 2147483647`,
		file + `:7: volumes[0].allow: site name "HQ": want lower-case letters, digits and dashes (a DNS label)`,
		file + `:8: volumes[0].keep-for: "a week": want a duration such as 24h or 168h (0 for none)`,
		file + `:9: volumes[1].name: volume "erp" is also declared on line 6`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("something listens on %s", addr)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("the refused configuration created %s", dir)
	}
	out, err = drfsCmd(t, 20*time.Second, "serve", "--config", file, "--dir", dir, "--insecure")
	if err == nil || !strings.Contains(out, "is the whole configuration: put --dir, --insecure in the file") {
		t.Errorf("--config with --dir: %v\n%s", err, out)
	}
}

// TestServe_ConfigReload runs drfs serve --config with per-volume retention and allow
// bindings over mutual TLS, replicates two volumes to it, then edits the file and reloads it
// (drfs serve --reload, then SIGHUP): retention and bindings change for the open volumes at once (a narrowed retention
// prunes only when the next log is applied), a setting that needs a restart keeps its value
// and is named in the log, and a broken file is refused whole while the server goes on
// serving by the configuration it had.
func TestServe_ConfigReload(t *testing.T) {
	requireTools(t)
	dr, hq := twoSites(t)
	r := newReplica(t, "", dr)
	r.Config = filepath.Join(r.Logs, "serve.yaml")
	writeServeConfig(t, r, r.Addr, `keep-points: 2
keep-for: 0s
volumes:
  - {name: erp, allow: hq, keep-for: 168h}
  - {name: build, allow: hq, keep-points: 2}
  - {name: spare, allow: dr}
`)
	r.Start()

	mounts := map[string]*Mount{}
	for _, v := range []string{"erp", "build"} {
		// Shipped only when the test syncs: one change log, one recovery point, per write.
		mounts[v] = testMountWith(t, MountOptions{Volume: v, Args: []string{"--replica", r.URL(), "--certs", hq, "--interval", "1h"}})
	}
	round := 0
	// write changes a file on both volumes and waits until the replica applied it.
	write := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			round++
			for v, m := range mounts {
				mustWriteFile(t, filepath.Join(m.Mnt, "disk.raw"), randBytes(uint64(round), 64<<10), 0o644)
				if seq := m.Sync(time.Minute); seq == 0 {
					t.Fatalf("%s: nothing acknowledged", v)
				}
			}
		}
	}
	// points are the recovery points the replica keeps undo data for (drfs points lists
	// one more: the state the oldest undo restores).
	points := func(v string) []uint64 {
		var from []uint64
		for _, p := range readReplicaState(t, r.Dir, v).Points {
			from = append(from, p.From)
		}
		return from
	}
	write(4)
	erpBefore, buildBefore := points("erp"), points("build")
	if len(erpBefore) < 4 {
		t.Errorf("erp (keep-for 168h): %d points after 4 cycles, want every one", len(erpBefore))
	}
	if len(buildBefore) != 2 {
		t.Errorf("build (keep-points 2): %d points, want 2", len(buildBefore))
	}

	// Bindings: spare is pinned to dr, erp to hq.
	hqClient := certClient(t, hq, filepath.Join(hq, "primary.pem"), hq)
	drClient := certClient(t, dr, filepath.Join(dr, "primary.pem"), dr)
	get := func(c *http.Client, who, v string, want int) {
		t.Helper()
		code, body, err := httpGet(c, r.URL()+"/v1/volumes/"+v)
		if err != nil || code != want {
			t.Errorf("GET volume %s as primary %s: %d %s %v, want %d", v, who, code, strings.TrimSpace(body), err, want)
		}
	}
	get(hqClient, "hq", "spare", http.StatusForbidden)
	get(drClient, "dr", "spare", http.StatusOK) // opens spare, bound to dr
	get(drClient, "dr", "erp", http.StatusForbidden)

	// Narrow erp to one point, keep every point of build for a week, move spare to hq, and
	// change the port (that one needs a restart).
	writeServeConfig(t, r, freeAddr(t), `keep-points: 2
keep-for: 0s
volumes:
  - {name: erp, allow: hq, keep-points: 1, keep-for: 0s}
  - {name: build, allow: hq, keep-points: 2, keep-for: 168h}
  - {name: spare, allow: hq}
`)
	out, err := drfsCmd(t, time.Minute, "serve", "--config", r.Config, "--reload")
	if err != nil {
		t.Fatalf("drfs serve --reload: %v\n%s\n%s", err, out, r.Log())
	}
	for _, want := range []string{"changed    erp (keep-points,keep-for), build (keep-for), spare (allow)\n",
		"restart    listen (take effect when drfs serve restarts)\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("drfs serve --reload does not say %q:\n%s", want, out)
		}
	}
	if !strings.Contains(r.Log(), "take effect when drfs serve restarts") || !strings.Contains(r.Log(), "settings=listen") {
		t.Errorf("the log does not say listen takes effect at the restart:\n%s", r.Log())
	}
	if n := len(points("erp")); n != len(erpBefore) {
		t.Errorf("the reload itself pruned erp: %d points, had %d", n, len(erpBefore))
	}
	get(hqClient, "hq", "spare", http.StatusOK)
	get(drClient, "dr", "spare", http.StatusForbidden)

	write(3) // on the old port: listen kept its value
	if ps := points("erp"); len(ps) != 1 {
		t.Errorf("erp after narrowing to keep-points 1: %d points, want 1", len(ps))
	}
	buildAfter := points("build")
	if len(buildAfter) != len(buildBefore)+3 || buildAfter[0] != buildBefore[0] {
		t.Errorf("build with keep-for 168h: points %v, want the 2 it had and 3 new ones", buildAfter)
	}

	// A broken file: refused whole, every problem logged, the configuration stays.
	if err := os.WriteFile(r.Config, []byte("dir: relative\nkeep-points: 0\nvolumes: {erp: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = drfsCmd(t, time.Minute, "serve", "--config", r.Config, "--reload")
	if err == nil || !strings.Contains(out, "5 problems in the configuration, the running drfs serve was not asked to reload it") {
		t.Errorf("drfs serve --reload of a broken file: %v\n%s", err, out)
	}
	r.Signal(syscall.SIGHUP)
	r.waitLog("reload refused: the running configuration stays", 1)
	for _, want := range []string{r.Config + `:1: dir: "relative": want an absolute path`, r.Config + `:2: keep-points: "0"`} {
		if !strings.Contains(r.Log(), want) {
			t.Errorf("the log does not name the problem %q:\n%s", want, r.Log())
		}
	}
	write(1)
	if ps := points("erp"); len(ps) != 1 {
		t.Errorf("erp after the refused reload: %d points, want 1 (the configuration in force)", len(ps))
	}
	if ps := points("build"); len(ps) != len(buildAfter)+1 {
		t.Errorf("build after the refused reload: %d points, want %d", len(ps), len(buildAfter)+1)
	}
	get(hqClient, "hq", "spare", http.StatusOK)
	ms := scrapeSeries(t, r.Metrics)
	if a, f := ms[`drfs_serve_reloads_total{result="applied"}`], ms[`drfs_serve_reloads_total{result="refused"}`]; a != 1 || f != 1 {
		t.Errorf("drfs_serve_reloads_total: applied %v refused %v, want 1 and 1", a, f)
	}
	for _, m := range mounts {
		m.Stop()
	}
}

// TestServe_SystemdNotify runs drfs serve under a stand-in for systemd's notification socket
// (Type=notify): READY=1 once it listens, RELOADING=1 then READY=1 around each SIGHUP (a
// refused reload too, with a STATUS saying so), STOPPING=1 on SIGTERM.
func TestServe_SystemdNotify(t *testing.T) {
	requireTools(t)
	r := newReplica(t, "", "")
	sock := filepath.Join(r.Logs, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r.Config = filepath.Join(r.Logs, "serve.yaml")
	r.Env = []string{"NOTIFY_SOCKET=" + sock}
	writeServeConfig(t, r, r.Addr, "keep-for: 1h\n")

	// next returns the next notification, failing after 15 s.
	next := func(what string) string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v\n%s", what, err, r.Log())
		}
		msg := string(buf[:n])
		t.Logf("notification: %q", msg)
		return msg
	}
	expect := func(state string, also ...string) {
		t.Helper()
		msg := next(state)
		lines := strings.Split(msg, "\n")
		if lines[0] != state {
			t.Fatalf("notification %q, want %s first", msg, state)
		}
		for _, a := range also {
			if !strings.Contains(msg, a) {
				t.Errorf("notification %q does not carry %q", msg, a)
			}
		}
	}
	r.Start()
	expect("READY=1", "STATUS=serving replicas on http://"+r.Addr)

	writeServeConfig(t, r, r.Addr, "keep-for: 2h\n")
	r.Signal(syscall.SIGHUP)
	expect("RELOADING=1", "MONOTONIC_USEC=")
	expect("READY=1")
	r.waitLog("reload applied", 1)

	if err := os.WriteFile(r.Config, []byte("keep-points: many\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Signal(syscall.SIGHUP)
	expect("RELOADING=1")
	expect("READY=1", "the last reload was refused")

	r.Stop()
	expect("STOPPING=1")
}
