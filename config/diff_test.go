package config

import (
	"reflect"
	"strings"
	"testing"
)

const diffBase = `
certs: /etc/drfs/certs
sites:
  dr: {url: "https://dr:9740", bandwidth: 50M}
  disk2: {url: "file:///backup"}
volumes:
  - {name: erp, source: /s/erp, state: /st/erp, mountpoint: /m/erp, replica: dr, rpo: 30s, tier: 1}
  - {name: build, source: /s/build, state: /st/build, mountpoint: /m/build, replica: dr, rpo: 1h}
  - {name: web, source: /s/web, state: /st/web, mountpoint: /m/web, replica: dr}
  - {name: db, source: /s/db, state: /st/db, mountpoint: /m/db, replica: dr}
  - {name: old, source: /s/old, state: /st/old, mountpoint: /m/old}
  - {name: logs, source: /s/logs, state: /st/logs, mountpoint: /m/logs, replica: disk2}
`

func mustParse(tb testing.TB, s string) *Host {
	tb.Helper()
	h, err := Parse("test.yaml", []byte(s))
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func TestDiff(t *testing.T) {
	old := mustParse(t, diffBase)
	newText := strings.NewReplacer(
		// erp: schedule only (rpo and tier)
		"rpo: 30s, tier: 1}", "rpo: 20s, tier: 2}",
		// build: a path (and its schedule)
		"state: /st/build, mountpoint: /m/build, replica: dr, rpo: 1h}", "state: /st/build2, mountpoint: /m/build, replica: dr, interval: 1h}",
		// web: another replica site
		"mountpoint: /m/web, replica: dr}", "mountpoint: /m/web, replica: disk2}",
		// old: removed; new: added
		"  - {name: old, source: /s/old, state: /st/old, mountpoint: /m/old}\n",
		"  - {name: new, source: /s/new, state: /st/new, mountpoint: /m/new}\n",
		// the link budget of dr, and where disk2 is
		"bandwidth: 50M", "bandwidth: 20M",
		`"file:///backup"`, `"file:///backup2"`,
	).Replace(diffBase) + "metrics: {listen: \"127.0.0.1:9750\"}\n"
	d := Diff(old, mustParse(t, newText))
	want := Delta{
		Added:   []string{"new"},
		Removed: []string{"old"},
		Changed: []Change{
			{Name: "erp", Fields: []string{"rpo", "tier"}, Scope: ScopeSchedule},
			{Name: "build", Fields: []string{"state", "interval", "rpo"}, Scope: ScopeMount},
			{Name: "web", Fields: []string{"replica"}, Scope: ScopeReplication},
			{Name: "logs", Fields: []string{"sites.disk2.url"}, Scope: ScopeReplication},
		},
		Untouched: []string{"db"},
		Bandwidth: []string{"dr"},
		Process:   []string{"metrics.listen"},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Diff:\n got %+v\nwant %+v", d, want)
	}

	if d := Diff(old, mustParse(t, diffBase)); !d.Empty() || len(d.Untouched) != len(old.Volumes) {
		t.Errorf("the same file: %+v", d)
	}
	// Certificates: the top-level directory is what every site without its own uses.
	d = Diff(old, mustParse(t, strings.Replace(diffBase, "certs: /etc/drfs/certs", "certs: /etc/drfs/certs2", 1)))
	if len(d.Changed) != 4 || d.Changed[0].Fields[0] != "sites.dr.certs" || d.Changed[0].Scope != ScopeReplication {
		t.Errorf("new certs: %+v", d)
	}
}
