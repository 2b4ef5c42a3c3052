package config

import (
	"reflect"
	"strings"
	"testing"
)

const serveDiffBase = `
dir: /srv/replica
listen: 0.0.0.0:9740
certs: /etc/drfs/certs
keep-points: 24
keep-for: 24h
volumes:
  - {name: erp, allow: hq, keep-for: 168h}
  - {name: build, allow: hq, keep-points: 12, keep-for: 0s}
  - {name: web, allow: hq}
  - {name: same, keep-points: 24, keep-for: 24h}
`

func mustParseServe(tb testing.TB, s string) *Serve {
	tb.Helper()
	c, err := ParseServe("serve.yaml", []byte(s))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestDiffServe(t *testing.T) {
	old := mustParseServe(t, serveDiffBase)
	for _, tc := range []struct {
		name string
		edit *strings.Replacer
		want ServeDelta
	}{
		{"nothing", strings.NewReplacer(), ServeDelta{}},
		{"comments and spelling only", strings.NewReplacer("keep-for: 24h\n", "keep-for: 1440m  # a day\n"), ServeDelta{}},
		{"per volume", strings.NewReplacer(
			"{name: erp, allow: hq, keep-for: 168h}", "{name: erp, allow: hq, keep-for: 720h}",
			"{name: build, allow: hq,", "{name: build, allow: dr,",
			// web leaves the file: its pin goes, its retention was the default already
			"  - {name: web, allow: hq}\n", "",
			// a new entry with the default retention and no pin changes nothing
			"  - {name: same,", "  - {name: new}\n  - {name: same,",
		), ServeDelta{Volumes: []ServeChange{
			{Name: "erp", Fields: []string{"keep-for"}},
			{Name: "build", Fields: []string{"allow"}},
			{Name: "web", Fields: []string{"allow"}},
		}}},
		{"default retention", strings.NewReplacer("keep-points: 24\nkeep-for: 24h\n", "keep-points: 48\nkeep-for: 24h\n"), ServeDelta{
			Default: []string{"keep-points"},
			// erp and web take the default count; build and "same" set their own.
			Volumes: []ServeChange{{Name: "erp", Fields: []string{"keep-points"}}, {Name: "web", Fields: []string{"keep-points"}}},
		}},
		{"restart only", strings.NewReplacer("listen: 0.0.0.0:9740", "listen: 0.0.0.0:9741",
			"certs: /etc/drfs/certs", "certs: /etc/drfs/certs2\nmax-concurrent-logs: 8\nmetrics: {listen: \"127.0.0.1:9751\"}\nlog: {format: json}"), ServeDelta{
			Restart: []string{"listen", "certs", "max-concurrent-logs", "log.format", "metrics.listen"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := mustParseServe(t, tc.edit.Replace(serveDiffBase))
			d := DiffServe(old, next)
			if !reflect.DeepEqual(d, tc.want) {
				t.Errorf("DiffServe:\n got %+v\nwant %+v", d, tc.want)
			}
			if d.Empty() != reflect.DeepEqual(tc.want, ServeDelta{}) {
				t.Errorf("Empty() = %v", d.Empty())
			}
		})
	}
}

// TestServe_KeepRestartSettings: a reload keeps what the running process cannot change and
// takes the rest, so the next reload compares with what is really in force.
func TestServe_KeepRestartSettings(t *testing.T) {
	old := mustParseServe(t, serveDiffBase)
	next := mustParseServe(t, strings.NewReplacer("listen: 0.0.0.0:9740", "listen: 0.0.0.0:9741",
		"dir: /srv/replica", "dir: /srv/other", "keep-points: 24", "keep-points: 5").Replace(serveDiffBase))
	got := next.KeepRestartSettings(old)
	if got.Listen != old.Listen || got.Dir != old.Dir || got.KeepPoints != 5 || len(got.Volumes) != len(next.Volumes) {
		t.Errorf("KeepRestartSettings: %+v", got)
	}
	if d := DiffServe(got, next); !reflect.DeepEqual(d.Restart, []string{"dir", "listen"}) || len(d.Default)+len(d.Volumes) != 0 {
		t.Errorf("the next reload would see %+v", d)
	}
	if next.Listen != "0.0.0.0:9741" {
		t.Error("KeepRestartSettings changed its receiver")
	}
}
