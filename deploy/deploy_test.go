// Package deploy holds what operators install beside drfs: Prometheus alert rules
// (prometheus/), a Grafana dashboard (grafana/), systemd units (systemd/) and the example
// configuration (drfs/) that make install puts in place. Its tests check them with promtool,
// systemd-analyze and drfs daemon --check, check the dashboard's JSON and run make install
// into a temporary root; e2e's TestMonitoring checks every metric they name against a
// running mount and replica, and e2e's TestSystemd tests the daemon's side of the unit.
package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// promtool runs promtool with args in dir prometheus/ and fails the test on a non-zero exit.
// promtool is Debian's prometheus package (scripts/deps.sh installs it); a missing one is a
// failure, not a skip.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (scripts/deps.sh installs it: apt-get install prometheus): %v", err)
	}
	cmd := exec.Command(p, args...)
	cmd.Dir = "prometheus"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestAlertRules_Check(t *testing.T) {
	promtool(t, "check", "rules", "drfs-alerts.yaml")
}

// TestAlertRules_Test runs the synthetic series of drfs-alerts.test.yaml through every alert,
// firing and not firing.
func TestAlertRules_Test(t *testing.T) {
	promtool(t, "test", "rules", "drfs-alerts.test.yaml")
}

// TestAlertRules_EveryAlertTested fails when an alert has no promtool test case that expects
// it to fire.
func TestAlertRules_EveryAlertTested(t *testing.T) {
	rules, err := os.ReadFile("prometheus/drfs-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("prometheus/drfs-alerts.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	var last string
	for _, l := range strings.Split(string(tests), "\n") {
		l = strings.TrimSpace(l)
		if name, ok := strings.CutPrefix(l, "alertname: "); ok {
			last = name
		}
		if strings.HasPrefix(l, "- exp_labels:") {
			fires[last] = true
		}
	}
	n := 0
	for _, l := range strings.Split(string(rules), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(l), "- alert: "); ok {
			n++
			if !fires[name] {
				t.Errorf("alert %s has no test case in drfs-alerts.test.yaml that expects it to fire", name)
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts found in drfs-alerts.yaml")
	}
}

// Dashboard is the part of a Grafana dashboard the tests look at.
type Dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Panel is one dashboard panel (rows hold theirs in Panels).
type Panel struct {
	Title      string          `json:"title"`
	Type       string          `json:"type"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []Panel `json:"panels"`
}

func TestDashboard_Valid(t *testing.T) {
	b, err := os.ReadFile("grafana/drfs-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d Dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 {
		t.Errorf("title %q, uid %q, schemaVersion %d: want all set (schemaVersion >= 30)", d.Title, d.UID, d.SchemaVersion)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error("no datasource template variable: the dashboard would be bound to one Prometheus")
	}
	var walk func([]Panel)
	n := 0
	walk = func(ps []Panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			n++
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			if !strings.Contains(string(p.Datasource), "${datasource}") {
				t.Errorf("panel %q: datasource %s, want the ${datasource} variable", p.Title, p.Datasource)
			}
			for _, q := range p.Targets {
				if !strings.Contains(q.Expr, "drfs_") {
					t.Errorf("panel %q: query %q names no drfs metric", p.Title, q.Expr)
				}
			}
		}
	}
	walk(d.Panels)
	if n == 0 {
		t.Fatal("dashboard has no panels")
	}
}
