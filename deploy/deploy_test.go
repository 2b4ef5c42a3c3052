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
	"regexp"
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
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Panel is one dashboard panel (rows hold theirs in Panels).
type Panel struct {
	ID         int             `json:"id"`
	Title      string          `json:"title"`
	Type       string          `json:"type"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels  []Panel `json:"panels"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
}

func readDashboard(t *testing.T) Dashboard {
	t.Helper()
	b, err := os.ReadFile("grafana/drfs-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	return d
}

// TestDashboard_Layout fails when panels overlap or leave the 24-column grid, when two panels
// share an id, or when a query uses a variable the dashboard does not define.
func TestDashboard_Layout(t *testing.T) {
	d := readDashboard(t)
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	varRef := regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)
	ids := map[int]string{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range d.Panels {
		if len(p.Panels) > 0 {
			t.Errorf("row %q is collapsed (holds its panels): keep rows open so every panel has a place on the grid", p.Title)
		}
		if prev, ok := ids[p.ID]; ok {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v is off the 24-column grid", p.Title, g)
		}
		if p.Type == "row" && (g.X != 0 || g.W != 24 || g.H != 1) {
			t.Errorf("row %q: gridPos %+v, want the full width and height 1", p.Title, g)
		}
	overlap:
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at x=%d y=%d", other, p.Title, x, y)
					break overlap
				}
				taken[cell{x, y}] = p.Title
			}
		}
		for _, q := range p.Targets {
			for _, m := range varRef.FindAllStringSubmatch(q.Expr, -1) {
				if !vars[m[1]] && !strings.HasPrefix(m[1], "__") {
					t.Errorf("panel %q: query %q uses $%s, which is not a template variable", p.Title, q.Expr, m[1])
				}
			}
		}
	}
}

func TestDashboard_Valid(t *testing.T) {
	d := readDashboard(t)
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
