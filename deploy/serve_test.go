package deploy

import (
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

// TestServeUnit: drfs serve under systemd tells it when it is ready (Type=notify), reloads
// through its local socket (a refused file fails the reload), and reads the file the example
// installs.
func TestServeUnit(t *testing.T) {
	u := parseUnit(t, "systemd/drfs-serve.service")
	for _, c := range []struct{ section, key, want string }{
		{"Service", "Type", "notify"},
		{"Service", "ExecStart", binPath + " serve --config /etc/drfs/serve.yaml"},
		{"Service", "ExecReload", binPath + " serve --config /etc/drfs/serve.yaml --reload"},
		{"Service", "Restart", "on-failure"},
		{"Unit", "After", "network-online.target local-fs.target"},
		{"Install", "WantedBy", "multi-user.target"},
	} {
		if got := u.one(t, c.section, c.key); got != c.want {
			t.Errorf("[%s] %s=%s, want %s", c.section, c.key, got, c.want)
		}
	}
	u.one(t, "Service", "TimeoutStopSec") // longer than drfs serve's 30 s drain
}
