package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The alert rules and the dashboard operators install (deploy/).
const (
	alertRulesFile = "deploy/prometheus/drfs-alerts.yaml"
	dashboardFile  = "deploy/grafana/drfs-dashboard.json"
)

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promOffset   = regexp.MustCompile(`\boffset\s+-?[0-9a-z]+`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "by": true, "without": true, "on": true,
		"ignoring": true, "group_left": true, "group_right": true, "offset": true, "inf": true, "nan": true,
	}
)

// promMetricNames returns the metric names a PromQL expression selects: identifiers outside
// strings, label matchers, ranges and grouping clauses that are neither functions (followed
// by a parenthesis) nor keywords.
func promMetricNames(expr string) []string {
	e := promString.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRange.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	e = promOffset.ReplaceAllString(e, " ")
	var names []string
	for _, m := range promIdent.FindAllStringIndex(e, -1) {
		id := e[m[0]:m[1]]
		if m[0] > 0 && strings.ContainsRune("0123456789.$", rune(e[m[0]-1])) {
			continue // part of a number (1e9, 0.8e3) or a dashboard variable ($__rate_interval)
		}
		if strings.HasPrefix(strings.TrimLeft(e[m[1]:], " \t\n"), "(") || promKeywords[strings.ToLower(id)] {
			continue // a function or a keyword
		}
		names = append(names, id)
	}
	return names
}

func TestPromMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`drfs_shipper_lag_seconds > (drfs_shipper_rpo_target_seconds > 0)`:                                      {"drfs_shipper_lag_seconds", "drfs_shipper_rpo_target_seconds"},
		`sum without (state) (drfs_shipper_replication_state{state=~"connecting|disconnected"}) > 0`:            {"drfs_shipper_replication_state"},
		`drfs_journal_size_bytes > on (job, instance, volume) (0.8 * (drfs_shipper_journal_max_bytes > 0))`:     {"drfs_journal_size_bytes", "drfs_shipper_journal_max_bytes"},
		`histogram_quantile(0.99, sum by (le, instance) (rate(x_bucket{instance=~"$i"}[$__rate_interval])))`:    {"x_bucket"},
		`increase(a_total[15m] offset 1h) > 1e9 and b unless c or up`:                                           {"a_total", "b", "c", "up"},
		`max_over_time(drfs_shipper_lag_seconds[5m]) > 0.8 * (drfs_shipper_rpo_target_seconds > bool 0) / 2e-3`: {"drfs_shipper_lag_seconds", "drfs_shipper_rpo_target_seconds"},
	} {
		if got := promMetricNames(expr); !slices.Equal(got, want) {
			t.Errorf("promMetricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

// monitoringExprs returns every PromQL expression of the alert rules and the dashboard, each
// with where it comes from.
func monitoringExprs(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	rules, err := os.ReadFile(filepath.Join(repoRoot, alertRulesFile))
	if err != nil {
		t.Fatal(err)
	}
	alert := ""
	for _, l := range strings.Split(string(rules), "\n") {
		l = strings.TrimSpace(l)
		if name, ok := strings.CutPrefix(l, "- alert: "); ok {
			alert = name
		}
		if e, ok := strings.CutPrefix(l, "expr: "); ok {
			if e == "" || e[0] == '|' || e[0] == '>' {
				t.Fatalf("%s: alert %s: write expr on one line (the test reads it line by line)", alertRulesFile, alert)
			}
			exprs[e] = "alert " + alert
		}
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, raw := range ps {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("%s: %v", dashboardFile, err)
			}
			for _, q := range p.Targets {
				exprs[q.Expr] = "panel " + p.Title
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	labelValues := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)
	for _, v := range dash.Templating.List {
		if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
			exprs[m[1]] = "variable " + v.Name
		}
	}
	return exprs
}

// scrapeSeries fetches addr's /metrics and returns each series line's name and labels
// (`name{a="b"}`), with its value.
func scrapeSeries(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	res := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: %q: %v", addr, line, err)
		}
		res[line[:sp]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return res
}

func metricName(series string) string {
	if i := strings.IndexByte(series, '{'); i >= 0 {
		return series[:i]
	}
	return series
}

// TestMonitoring scrapes a replicating mount and its replica and checks that every metric the
// alert rules and the dashboard name is exported, so that renaming a metric breaks this test
// instead of silencing an alert; and that the state values the rules match exist.
func TestMonitoring(t *testing.T) {
	requireTools(t)
	exprs := monitoringExprs(t)
	if len(exprs) < 20 {
		t.Fatalf("found only %d expressions in %s and %s", len(exprs), alertRulesFile, dashboardFile)
	}
	r := startReplica(t, "", "")
	metrics := freeAddr(t)
	m := testMountWith(t, MountOptions{Args: r.MountArgs("--rpo", "30s", "--journal-max", "64M", "--metrics", metrics)})
	if err := os.WriteFile(filepath.Join(m.Mnt, "disk.img"), randBytes(3, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	m.Sync(time.Minute)
	var primary map[string]float64
	if !waitFor(10*time.Second, func() bool {
		primary = scrapeSeries(t, metrics)
		return primary[`drfs_shipper_replication_state{state="replicating"}`] == 1
	}) {
		t.Fatalf("primary never showed the replicating state in its metrics:\n%s\n%s", m.DaemonLog(), r.Log())
	}
	replica := scrapeSeries(t, r.Metrics)

	exported := map[string]bool{}
	for s := range primary {
		exported[metricName(s)] = true
	}
	for s := range replica {
		exported[metricName(s)] = true
	}
	seen := map[string]bool{}
	for e, where := range exprs {
		names := promMetricNames(e)
		if len(names) == 0 {
			t.Errorf("%s: %q names no metric", where, e)
		}
		for _, n := range names {
			seen[n] = true
			if !exported[n] {
				t.Errorf("%s: %q uses %s, which neither drfs mount nor drfs serve exports", where, e, n)
			}
		}
	}
	t.Logf("%d expressions name %d metrics", len(exprs), len(seen))

	// The state values the rules and dashboard match on.
	stateSel := regexp.MustCompile(`drfs_shipper_replication_state\{[^}]*state=~?"([^"]*)"`)
	for e, where := range exprs {
		for _, m := range stateSel.FindAllStringSubmatch(e, -1) {
			for _, st := range strings.Split(m[1], "|") {
				if _, ok := primary[`drfs_shipper_replication_state{state="`+st+`"}`]; !ok {
					t.Errorf("%s: %q matches replication state %q, which is not exported", where, e, st)
				}
			}
		}
	}
	// The limits the rules compare against are the mount's flags.
	for s, want := range map[string]float64{
		"drfs_shipper_rpo_target_seconds": 30,
		"drfs_shipper_journal_max_bytes":  64 << 20,
		"drfs_shipper_failover_in_doubt":  0,
		"drfs_shipper_verify_differences": 0,
	} {
		if got, ok := primary[s]; !ok || got != want {
			t.Errorf("%s = %v (exported: %v), want %v", s, got, ok, want)
		}
	}
}
