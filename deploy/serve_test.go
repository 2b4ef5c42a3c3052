package deploy

import (
	"os"
	"strings"
	"testing"

	"drfs/config"
)

// TestServeExample_Parses keeps the example replica configuration valid.
func TestServeExample_Parses(t *testing.T) {
	s, err := config.ReadServeFile("drfs/serve.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Volumes) == 0 || s.KeepFor == 0 {
		t.Errorf("the example shows no volumes or no keep-for: %+v", s)
	}
}

// unitKeys reads the Key=Value lines of a systemd unit file, by key.
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Errorf("%s: not Key=Value: %q", path, l)
			continue
		}
		keys[k] = append(keys[k], v)
	}
	return keys
}

// TestServeUnit: drfs serve under systemd tells it when it is ready (Type=notify), reloads on
// SIGHUP, and reads the file the example installs.
func TestServeUnit(t *testing.T) {
	keys := unitKeys(t, "systemd/drfs-serve.service")
	for k, want := range map[string]string{
		"Type":       "notify",
		"ExecStart":  "/usr/local/bin/drfs serve --config /etc/drfs/serve.yaml",
		"ExecReload": "/bin/kill -HUP $MAINPID",
		"Restart":    "on-failure",
		"After":      "network-online.target local-fs.target",
		"WantedBy":   "multi-user.target",
	} {
		if got := keys[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", k, got, want)
		}
	}
	if got := keys["TimeoutStopSec"]; len(got) != 1 {
		t.Errorf("TimeoutStopSec=%v: want one, longer than drfs serve's 30 s drain", got)
	}
}
