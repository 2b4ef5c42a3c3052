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

	"drfs/config"
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

var annotationQuery = regexp.MustCompile("printf `([^`]*)`")

// monitoringExprs returns every PromQL expression of the alert rules (and of their annotations'
// templates) and the dashboard, each with where it comes from.
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
		// The queries of annotation templates: {{ with printf `QUERY` ... | query }}.
		for _, m := range annotationQuery.FindAllStringSubmatch(l, -1) {
			exprs[m[1]] = "annotation of alert " + alert
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

var promLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// seriesLabels returns the labels of a series line's name and labels (`name{a="b"}`).
func seriesLabels(series string) map[string]string {
	ls := map[string]string{}
	if i := strings.IndexByte(series, '{'); i >= 0 {
		for _, m := range promLabel.FindAllStringSubmatch(series[i:], -1) {
			ls[m[1]] = m[2]
		}
	}
	return ls
}

// lookupSeries returns the value of the series of metric name whose labels include want.
func lookupSeries(scrape map[string]float64, name string, want map[string]string) (float64, bool) {
	for s, v := range scrape {
		if metricName(s) != name {
			continue
		}
		ls := seriesLabels(s)
		match := true
		for k, w := range want {
			if ls[k] != w {
				match = false
			}
		}
		if match {
			return v, true
		}
	}
	return 0, false
}

// hostMetrics are the series of a primary host (drfs daemon, and drfs mount, which runs its
// code for one volume) that belong to no volume, with the label that tells them apart
// instead. Every other drfs_ series of a primary carries volume.
var hostMetrics = map[string]string{
	"drfs_daemon_reloads_total":           "result",
	"drfs_link_capacity_bytes_per_second": "site",
	"drfs_link_measured_bytes_per_second": "site",
	"drfs_link_budget_bytes_per_second":   "site",
	"drfs_link_busy_ratio":                "site",
	"drfs_link_busy_seconds_total":        "site",
}

// conditionalMetrics are the metrics the rules and the dashboard name that are exported only in
// a state a healthy, caught-up volume is not in, and the file that declares them. TestMonitoring
// brings a second volume into that state (a link budget far below what it writes) rather than
// skip them.
var conditionalMetrics = []struct{ name, when, source string }{
	{"drfs_link_rpo_miss_in_seconds", "while the link predicts that the volume misses its RPO target", "link/metrics.go"},
	{"drfs_link_deadline_seconds", "while the volume has changes the replica has not acknowledged", "link/metrics.go"},
}

// checkPrimaryLabels fails for a drfs_ series of a primary that is not labelled with its
// volume (or, for the host's own series, with the label of hostMetrics), and for a link
// series that does not name the site of drfs mount's --replica.
func checkPrimaryLabels(t *testing.T, scrape map[string]float64, volume string) {
	t.Helper()
	for s := range scrape {
		name := metricName(s)
		if !strings.HasPrefix(name, "drfs_") {
			continue
		}
		ls := seriesLabels(s)
		if l, ok := hostMetrics[name]; ok {
			if _, has := ls["volume"]; has {
				t.Errorf("%s: a host series with a volume label", s)
			}
			if ls[l] == "" {
				t.Errorf("%s: no %s label", s, l)
			}
		} else if ls["volume"] != volume {
			t.Errorf("%s: want the label volume=%q on every series of the volume", s, volume)
		}
		if strings.HasPrefix(name, "drfs_link_") && ls["site"] != config.ReplicaSite {
			t.Errorf("%s: want the label site=%q (the site drfs mount gives --replica)", s, config.ReplicaSite)
		}
	}
}

// waitReplicating scrapes addr until m's volume shows the replicating state, and returns the
// scrape.
func waitReplicating(t *testing.T, m *Mount, r *Replica, addr string) map[string]float64 {
	t.Helper()
	var scrape map[string]float64
	if !waitFor(10*time.Second, func() bool {
		scrape = scrapeSeries(t, addr)
		v, _ := lookupSeries(scrape, "drfs_shipper_replication_state", map[string]string{"state": "replicating", "volume": m.Volume})
		return v == 1
	}) {
		t.Fatalf("volume %s never showed the replicating state in its metrics:\n%s\n%s", m.Volume, m.DaemonLog(), r.Log())
	}
	return scrape
}

var (
	promSelector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)
	promMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|=)\s*"([^"]*)"`)
)

// TestMonitoring scrapes two replicating mounts and their replica and checks that every metric
// the alert rules and the dashboard name is exported, so that renaming a metric breaks this
// test instead of silencing an alert; that the label values the rules match exist; and that
// every series of a volume is labelled with it. The first volume keeps up with its target; the
// second writes far more than its link budget carries, so that the link predicts it misses
// its target and the series exported only then (conditionalMetrics) are checked too.
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
	primary := waitReplicating(t, m, r, metrics)

	// 32 KiB/s cannot carry 2 MiB of incompressible writes within a 1 s target: one log alone
	// (at least link.MinLogBytes) takes seconds.
	riskMetrics := freeAddr(t)
	risky := testMountWith(t, MountOptions{Volume: "risky", Args: r.MountArgs("--rpo", "1s", "--bwlimit", "32K", "--metrics", riskMetrics)})
	waitReplicating(t, risky, r, riskMetrics)
	if err := os.WriteFile(filepath.Join(risky.Mnt, "disk.img"), randBytes(4, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var atRisk map[string]float64
	vol := map[string]string{"site": config.ReplicaSite, "volume": risky.Volume}
	var missing []string
	if !waitFor(30*time.Second, func() bool {
		atRisk = scrapeSeries(t, riskMetrics)
		missing = nil
		if v, _ := lookupSeries(atRisk, "drfs_link_rpo_at_risk", vol); v != 1 {
			missing = append(missing, "drfs_link_rpo_at_risk == 1")
		}
		for _, c := range conditionalMetrics {
			if _, ok := lookupSeries(atRisk, c.name, vol); !ok {
				missing = append(missing, c.name)
			}
		}
		return len(missing) == 0
	}) {
		t.Fatalf("volume %s, at risk on its link, does not export %v:\n%s", risky.Volume, missing, risky.DaemonLog())
	}
	replica := scrapeSeries(t, r.Metrics)

	exported := map[string]bool{}
	for _, sc := range []map[string]float64{primary, atRisk, replica} {
		for s := range sc {
			exported[metricName(s)] = true
		}
	}
	for _, c := range conditionalMetrics {
		src, err := os.ReadFile(filepath.Join(repoRoot, c.source))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(src), `"`+c.name+`"`) {
			t.Errorf("%s, listed as exported %s, is not declared in %s any more", c.name, c.when, c.source)
		}
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
	for _, c := range conditionalMetrics {
		if !seen[c.name] {
			t.Errorf("%s is listed as conditional (exported %s) but no rule or panel names it: drop it from the list", c.name, c.when)
		}
	}
	t.Logf("%d expressions name %d metrics", len(exprs), len(seen))

	// Every series of a volume carries its name: the rules join and group by it.
	checkPrimaryLabels(t, primary, m.Volume)
	checkPrimaryLabels(t, atRisk, risky.Volume)

	// The label values the rules and the dashboard match on (replication states, reload
	// results); not the dashboard's variables.
	all := map[string]float64{}
	for _, sc := range []map[string]float64{primary, atRisk, replica} {
		for s, v := range sc {
			all[s] = v
		}
	}
	for e, where := range exprs {
		for _, sel := range promSelector.FindAllStringSubmatch(e, -1) {
			for _, mt := range promMatcher.FindAllStringSubmatch(sel[2], -1) {
				if strings.ContainsAny(mt[3], "$*") {
					continue
				}
				for _, val := range strings.Split(mt[3], "|") {
					if _, ok := lookupSeries(all, sel[1], map[string]string{mt[1]: val}); !ok {
						t.Errorf("%s: %q matches %s{%s=%q}, which is not exported", where, e, sel[1], mt[1], val)
					}
				}
			}
		}
	}

	// The limits the rules compare against are the mounts' flags; the daemon's own series.
	for _, c := range []struct {
		scrape map[string]float64
		name   string
		labels map[string]string
		want   float64
	}{
		{primary, "drfs_shipper_rpo_target_seconds", map[string]string{"volume": m.Volume}, 30},
		{primary, "drfs_shipper_journal_max_bytes", map[string]string{"volume": m.Volume}, 64 << 20},
		{primary, "drfs_shipper_failover_in_doubt", map[string]string{"volume": m.Volume}, 0},
		{primary, "drfs_shipper_verify_differences", map[string]string{"volume": m.Volume}, 0},
		{primary, "drfs_link_budget_bytes_per_second", map[string]string{"site": config.ReplicaSite}, 0},
		{primary, "drfs_link_rpo_at_risk", map[string]string{"site": config.ReplicaSite, "volume": m.Volume}, 0},
		{primary, "drfs_daemon_volume_up", map[string]string{"volume": m.Volume}, 1},
		{primary, "drfs_daemon_reloads_total", map[string]string{"result": "applied"}, 0},
		{primary, "drfs_daemon_reloads_total", map[string]string{"result": "refused"}, 0},
		{atRisk, "drfs_shipper_rpo_target_seconds", map[string]string{"volume": risky.Volume}, 1},
		{atRisk, "drfs_link_budget_bytes_per_second", map[string]string{"site": config.ReplicaSite}, 32 << 10},
		{atRisk, "drfs_daemon_volume_up", map[string]string{"volume": risky.Volume}, 1},
	} {
		if got, ok := lookupSeries(c.scrape, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (exported: %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if v, _ := lookupSeries(atRisk, "drfs_link_rpo_miss_in_seconds", vol); v < 0 {
		t.Errorf("drfs_link_rpo_miss_in_seconds%v = %v, want a time to come", vol, v)
	}
}
