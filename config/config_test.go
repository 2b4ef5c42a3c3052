package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"drfs/shipper"
)

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestParse_Valid(t *testing.T) {
	h, err := Parse("drfs.yaml", mustRead(t, "testdata/daemon/valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if h.File != "drfs.yaml" || h.Certs != "/etc/drfs/certs" || h.Log.Format != "json" ||
		h.Metrics != (Metrics{Listen: "127.0.0.1:9750"}) {
		t.Errorf("host settings: %+v", h)
	}
	wantSites := map[string]Site{
		"dr":  {Name: "dr", URL: "https://dr-site.example.com:9740", Bandwidth: 50 << 20, line: 12},
		"usb": {Name: "usb", URL: "export:///media/usb/drfs", line: 15},
	}
	if len(h.Sites) != len(wantSites) {
		t.Errorf("sites: %v", h.Sites)
	}
	for name, want := range wantSites {
		if s := h.Sites[name]; s == nil || *s != want {
			t.Errorf("site %s = %+v, want %+v", name, s, want)
		}
	}
	want := []Volume{
		{Name: "erp", Source: "/srv/erp.real", State: "/var/lib/drfs/erp", Mountpoint: "/srv/erp",
			Replica: "dr", Schedule: shipper.Schedule{RPO: 30 * time.Second}, Tier: 1, JournalMax: 20 << 30,
			CheckpointInterval: 30 * time.Second, SegmentSize: 64 << 20, line: 19, named: true},
		{Name: "build", Source: "/srv/build.real", State: "/var/lib/drfs/build", Mountpoint: "/srv/build",
			Replica: "dr", Schedule: shipper.Schedule{RPO: time.Hour}, Tier: 3,
			CheckpointInterval: 30 * time.Second, SegmentSize: 64 << 20, line: 28, named: true},
		{Name: "archive", Source: "/srv/archive.real", State: "/var/lib/drfs/archive", Mountpoint: "/srv/archive",
			Replica: "usb", Schedule: shipper.Schedule{Interval: 24 * time.Hour}, Tier: LowestTier,
			CheckpointInterval: time.Minute, SegmentSize: 128 << 20, line: 36, named: true},
		{Name: "scratch.real", Source: "/srv/scratch.real", State: "/var/lib/drfs/scratch", Mountpoint: "/srv/scratch",
			Tier: LowestTier, CheckpointInterval: 30 * time.Second, SegmentSize: 64 << 20, line: 45},
	}
	if len(h.Volumes) != len(want) {
		t.Fatalf("%d volumes, want %d", len(h.Volumes), len(want))
	}
	for i := range want {
		if *h.Volumes[i] != want[i] {
			t.Errorf("volume %d:\n got %+v\nwant %+v", i, *h.Volumes[i], want[i])
		}
	}
	if s := h.Site(h.Volume("erp")); s == nil || s.Name != "dr" || h.SiteCerts(s) != "/etc/drfs/certs" {
		t.Errorf("site of erp: %+v", s)
	}
	if h.Site(h.Volume("scratch.real")) != nil {
		t.Error("an unreplicated volume has a site")
	}
	vc := h.Volume("archive").VolumeConfig()
	if vc.Source != "/srv/archive.real" || vc.State != "/var/lib/drfs/archive" || vc.Name != "archive" ||
		vc.CheckpointInterval != time.Minute || vc.SegmentSize != 128<<20 {
		t.Errorf("VolumeConfig: %+v", vc)
	}
}

// TestParse_Errors checks the exact text of every error of each invalid file: all of them,
// in file order, with file, line and field.
func TestParse_Errors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"unknown-keys.yaml", []string{
			`unknown-keys.yaml:2: logging: unknown field`,
			`unknown-keys.yaml:6: sites.dr.bandwith: unknown field (did you mean bandwidth?)`,
			`unknown-keys.yaml:13: volumes[0].jounral-max: unknown field (did you mean journal-max?)`,
		}},
		{"bad-values.yaml", []string{
			`bad-values.yaml:3: log.format: "xml": want text or json`,
			`bad-values.yaml:5: metrics.listen: "9750": want HOST:PORT, e.g. 127.0.0.1:9750`,
			`bad-values.yaml:9: sites.dr.bandwidth: "50 MB" is not a size (e.g. 512M, 10G)`,
			`bad-values.yaml:16: volumes[0].rpo: "30 seconds": want a positive duration such as 30s, 5m or 1h30m`,
			`bad-values.yaml:17: volumes[0].tier: "0": want a whole number from 1 to 9`,
			`bad-values.yaml:18: volumes[0].journal-max: "20Q" is not a size (e.g. 512M, 10G)`,
			`bad-values.yaml:19: volumes[0].checkpoint-interval: "-1m": want a positive duration such as 30s, 5m or 1h30m`,
			`bad-values.yaml:20: volumes[0].segment-size: "512K": want at least 1M`,
			`bad-values.yaml:21: volumes[0].debug: "yes please": want true or false`,
			`bad-values.yaml:27: volumes[1].interval: "sometimes": want a positive duration such as 30s or 5m, or continuous`,
			`bad-values.yaml:34: volumes[2].rpo: use either interval or rpo, not both`,
		}},
		{"overlap.yaml", []string{
			`overlap.yaml:7: volumes[1].source: /srv/erp.real/logs is inside the source of volume "erp" (line 3)`,
			`overlap.yaml:8: volumes[1].state: /var/lib/drfs/erp is also the state of volume "erp" (line 4): two volumes cannot share a state directory`,
			`overlap.yaml:12: volumes[2].state: /srv/self/.drfs is inside this volume's source`,
			`overlap.yaml:12: volumes[2].state: /srv/self/.drfs is inside this volume's mountpoint`,
			`overlap.yaml:13: volumes[2].mountpoint: /srv/self is also this volume's source`,
			`overlap.yaml:17: volumes[3].mountpoint: /srv/erp/nested is inside the mountpoint of volume "erp" (line 5)`,
		}},
		{"replica-inside.yaml", []string{
			`replica-inside.yaml:3: sites.disk2.url: /srv/vms.real/replica is inside the source of volume "vms" (line 6)`,
		}},
		{"names-sites.yaml", []string{
			`names-sites.yaml:2: sites.DR: site name "DR": want lower-case letters, digits and dashes (a DNS label)`,
			"names-sites.yaml:3: sites.DR.url: an https replica needs certs, a certificate directory (create one with `drfs certs`)",
			`names-sites.yaml:5: sites.local.url: "file://relative/dir": want file:///ABSOLUTE/DIR`,
			`names-sites.yaml:7: sites.plain.url: "http://dr.example.com:9740" is plaintext: use https, or set insecure for a loopback test`,
			`names-sites.yaml:13: volumes[0].replica: site "dr" is not defined under sites`,
			`names-sites.yaml:14: volumes[1].source: volume name "vms" is also the name of the volume on line 9`,
			`names-sites.yaml:17: volumes[2].mountpoint: required`,
			`names-sites.yaml:17: volumes[2].name: volume name "bad/name": want letters, digits, '.', '_' and '-' (at most 64)`,
			`names-sites.yaml:18: volumes[2].source: "srv/c": want an absolute path`,
			`names-sites.yaml:24: volumes[3].rpo: only applies to a replicated volume (set replica)`,
			`names-sites.yaml:25: volumes[3].tier: only applies to a replicated volume (set replica)`,
		}},
		{"duplicate-key.yaml", []string{
			`duplicate-key.yaml:6: volumes[0].source: given twice (first on line 3)`,
		}},
		{"syntax.yaml", []string{
			`syntax.yaml:2: did not find expected ',' or ']'`,
		}},
		{"alias.yaml", []string{
			`alias.yaml:5: aliases (*d) are not supported: write the value out`,
		}},
		{"wrong-shapes.yaml", []string{
			`wrong-shapes.yaml:2: volumes: want a list (- item), not a mapping`,
			`wrong-shapes.yaml:3: sites: want a mapping of name: entry, not a list`,
			`wrong-shapes.yaml:4: log: want a mapping of key: value, not "json"`,
		}},
		{"empty.yaml", []string{
			`empty.yaml: empty configuration`,
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			h, err := Parse(tc.file, mustRead(t, filepath.Join("testdata/daemon", tc.file)))
			checkErrors(t, h != nil, err, tc.want)
		})
	}
}

func checkErrors(t *testing.T, returned bool, err error, want []string) {
	t.Helper()
	if returned {
		t.Error("a configuration was returned with errors")
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	got := strings.Split(err.Error(), "\n")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(es) != len(want) {
		t.Errorf("%d errors, want %d", len(es), len(want))
	}
}

func TestParseServe_Valid(t *testing.T) {
	s, err := ParseServe("serve.yaml", mustRead(t, "testdata/serve/valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir != "/srv/drfs-replica" || s.Listen != "0.0.0.0:9740" || s.Certs != "/etc/drfs/certs" || s.Insecure ||
		s.MaxConcurrentLogs != 4 || s.KeepPoints != 48 || s.KeepFor != 24*time.Hour ||
		s.Metrics.Listen != "127.0.0.1:9751" || s.Log.Format != "text" {
		t.Errorf("serve settings: %+v", s)
	}
	want := []ServeVolume{
		{Name: "erp", Allow: "hq", KeepPoints: 48, KeepFor: 168 * time.Hour, line: 13},
		{Name: "build", Allow: "hq", KeepPoints: 12, KeepFor: 0, line: 16},
	}
	if len(s.Volumes) != len(want) {
		t.Fatalf("%d volumes, want %d", len(s.Volumes), len(want))
	}
	for i := range want {
		if *s.Volumes[i] != want[i] {
			t.Errorf("volume %d = %+v, want %+v", i, *s.Volumes[i], want[i])
		}
	}
	if got := s.Allow(); !reflect.DeepEqual(got, map[string]string{"erp": "hq", "build": "hq"}) {
		t.Errorf("Allow() = %v", got)
	}
	for name, want := range map[string]struct {
		n int
		d time.Duration
	}{"erp": {48, 168 * time.Hour}, "build": {12, 0}, "other": {48, 24 * time.Hour}} {
		if n, d := s.Retention(name); n != want.n || d != want.d {
			t.Errorf("Retention(%s) = %d, %s; want %d, %s", name, n, d, want.n, want.d)
		}
	}
}

func TestParseServe_Errors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"bad.yaml", []string{
			`bad.yaml:1: dir: "srv/drfs-replica": want an absolute path`,
			`bad.yaml:2: listen: "0.0.0.0": want HOST:PORT, e.g. 0.0.0.0:9740`,
			`bad.yaml:3: insecure: use either certs or insecure`,
			`bad.yaml:5: keep-points: "0": want a whole number from 1 to 2147483647`,
			`bad.yaml:6: keep-for: "forever": want a duration such as 24h or 168h (0 for none)`,
			`bad.yaml:7: retention: unknown field`,
			`bad.yaml:10: volumes[0].allow: site name "HQ": want lower-case letters, digits and dashes (a DNS label)`,
			`bad.yaml:11: volumes[0].keep-for: "-1h": want a duration such as 24h or 168h (0 for none)`,
			`bad.yaml:12: volumes[1].name: volume "erp" is also declared on line 9`,
			`bad.yaml:13: volumes[1].keep-points: "many": want a whole number from 1 to 2147483647`,
			`bad.yaml:14: volumes[2].name: required`,
		}},
		{"insecure.yaml", []string{
			`insecure.yaml:2: listen: insecure refuses to listen on 192.0.2.1: plaintext is only for loopback tests`,
		}},
		{"nocerts.yaml", []string{
			"nocerts.yaml:1: certs: required (create one with `drfs certs`), or set insecure for a loopback test",
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			s, err := ParseServe(tc.file, mustRead(t, filepath.Join("testdata/serve", tc.file)))
			checkErrors(t, s != nil, err, tc.want)
		})
	}
}

// TestDoc_Example keeps the example of doc.go the valid file the tests parse.
func TestDoc_Example(t *testing.T) {
	doc := string(mustRead(t, "doc.go"))
	for _, f := range []string{"testdata/daemon/valid.yaml", "testdata/serve/valid.yaml"} {
		var b strings.Builder
		for _, l := range strings.Split(strings.TrimSuffix(string(mustRead(t, f)), "\n"), "\n") {
			if l == "" {
				b.WriteString("//\n")
			} else {
				b.WriteString("//\t" + l + "\n")
			}
		}
		if !strings.Contains(doc, b.String()) {
			t.Errorf("doc.go does not show %s as it is:\n%s", f, b.String())
		}
	}
}

func TestReadFile(t *testing.T) {
	h, err := ReadFile("testdata/daemon/valid.yaml")
	if err != nil || h.File != "testdata/daemon/valid.yaml" {
		t.Fatalf("ReadFile: %v", err)
	}
	_, err = ReadFile("testdata/daemon/overlap.yaml")
	if err == nil || !strings.HasPrefix(err.Error(), "testdata/daemon/overlap.yaml:7: volumes[1].source: ") {
		t.Errorf("errors do not name the file as given: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a huge file: %v", err)
	}
	if _, err := ReadServeFile("testdata/serve/missing.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

func TestParse_ManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("volumes:\n  - source: /s\n    state: /t\n    mountpoint: /m\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&b, "    x%d: 1\n", i)
	}
	_, err := Parse("many.yaml", []byte(b.String()))
	var es Errors
	if !errors.As(err, &es) || len(es) != MaxErrors+1 {
		t.Fatalf("%d errors: %v", len(es), err)
	}
	if es[0].Error() != "many.yaml:5: volumes[0].x0: unknown field" || es[MaxErrors].Error() != "many.yaml: and 150 more errors" {
		t.Errorf("first %q, last %q", es[0], es[MaxErrors])
	}
}

// TestParse_WrongShapeOnce: a value of the wrong shape is reported once, however many
// checks read it.
func TestParse_WrongShapeOnce(t *testing.T) {
	_, err := Parse("w.yaml", []byte("sites: {r: {url: \"file:///r\"}}\nvolumes:\n  - {source: /s, state: /t, mountpoint: /m, replica: r, interval: [1]}\n"))
	if err == nil || err.Error() != "w.yaml:3: volumes[0].interval: want a value, not a list" {
		t.Errorf("got %v", err)
	}
}

// SocketOf finds the daemon's socket in a file that has problems, even one that is not YAML.
func TestSocketOf(t *testing.T) {
	for _, c := range []struct{ data, want string }{
		{"socket: /run/a.sock\nvolumes: []\n", "/run/a.sock"},
		{"socket: /run/a.sock\nbogus: 1\n", "/run/a.sock"},
		{"socket: '/run/b.sock'  # mine\nvolumes: [\n", "/run/b.sock"},
		{"volumes: [\n", DefaultSocket},
		{"socket: relative.sock\n", DefaultSocket},
		{"", DefaultSocket},
	} {
		if got := SocketOf([]byte(c.data)); got != c.want {
			t.Errorf("SocketOf(%q) = %q, want %q", c.data, got, c.want)
		}
	}
}
