package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"drfs/shipper"
	"drfs/volume"
)

// mountDefaults are the values drfs mount's flags have when none is given.
func mountDefaults() MountFlags {
	return MountFlags{CheckpointInterval: volume.DefaultCheckpointInterval, SegmentSize: "64M"}
}

func TestFromMountFlags(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	m := mountDefaults()
	m.Source, m.State, m.Mountpoint = "/srv/vms.real", "state", "/srv/vms"
	m.Replica, m.Certs, m.RPO, m.BWLimit, m.JournalMax = "https://dr.example.com:9740", "/etc/drfs/certs", 30*time.Second, "20M", "10G"
	m.Metrics, m.LogFormat = "127.0.0.1:9750", "json"
	h, err := FromMountFlags(m)
	if err != nil {
		t.Fatal(err)
	}
	want := Volume{Name: "vms.real", Source: "/srv/vms.real", State: filepath.Join(wd, "state"), Mountpoint: "/srv/vms",
		Replica: ReplicaSite, Schedule: shipper.Schedule{RPO: 30 * time.Second}, Tier: LowestTier, JournalMax: 10 << 30,
		CheckpointInterval: volume.DefaultCheckpointInterval, SegmentSize: 64 << 20}
	if len(h.Volumes) != 1 || *h.Volumes[0] != want {
		t.Fatalf("volumes %+v, want %+v", h.Volumes, want)
	}
	if s := h.Sites[ReplicaSite]; s == nil || *s != (Site{Name: ReplicaSite, URL: m.Replica, Bandwidth: 20 << 20}) {
		t.Errorf("site %+v", s)
	}
	if h.Certs != "/etc/drfs/certs" || h.Log.Format != "json" || h.Metrics.Listen != "127.0.0.1:9750" {
		t.Errorf("host %+v", h)
	}

	// Without --replica: a plain mount, every default of the flags.
	m = mountDefaults()
	m.Source, m.State, m.Mountpoint, m.Name = "/a/src", "/b/state", "/a/mnt", "vms"
	h, err = FromMountFlags(m)
	if err != nil {
		t.Fatal(err)
	}
	if v := h.Volumes[0]; v.Name != "vms" || v.Replica != "" || len(h.Sites) != 0 || v.Schedule != (shipper.Schedule{}) {
		t.Errorf("plain mount: %+v", v)
	}
}

// TestFromMountFlags_Errors: flags get the file's checks, every error at once, naming the flag.
func TestFromMountFlags_Errors(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*MountFlags)
		want []string
	}{
		{"schedule", func(m *MountFlags) {
			m.Replica, m.Insecure, m.Interval, m.RPO = "http://127.0.0.1:9740", true, "5m", time.Minute
			m.JournalMax, m.BWLimit = "lots", "1Z"
		}, []string{
			`--bwlimit: "1Z" is not a size (e.g. 512M, 10G)`,
			`--journal-max: "lots" is not a size (e.g. 512M, 10G)`,
			`--rpo: use either --interval or --rpo, not both`,
		}},
		{"no replica", func(m *MountFlags) { m.RPO, m.JournalMax, m.BWLimit = time.Minute, "1G", "10M" }, []string{
			`--bwlimit: only applies to a replicated volume (set --replica)`,
			`--rpo: only applies to a replicated volume (set --replica)`,
			`--journal-max: only applies to a replicated volume (set --replica)`,
		}},
		{"https without certs", func(m *MountFlags) { m.Replica = "https://dr:9740" }, []string{
			"--replica: an https replica needs --certs, a certificate directory (create one with `drfs certs`)",
		}},
		{"plaintext", func(m *MountFlags) { m.Replica = "http://192.0.2.1:9740" }, []string{
			`--replica: "http://192.0.2.1:9740" is plaintext: use https, or set --insecure for a loopback test`,
		}},
		{"layout", func(m *MountFlags) { m.State, m.Mountpoint = "/srv/vms.real/.drfs", "/srv/vms.real" }, []string{
			`--state: /srv/vms.real/.drfs is inside this volume's source`,
			`--state: /srv/vms.real/.drfs is inside this volume's mountpoint`,
			`MOUNTPOINT: /srv/vms.real is also this volume's source`,
		}},
		{"small rpo and segment", func(m *MountFlags) {
			m.Replica, m.Certs, m.RPO, m.SegmentSize = "file:///backup", "", 10*time.Millisecond, "4K"
		}, []string{
			`--segment-size: "4K": want at least 1M`,
			`--rpo: 10ms is too small: use at least 100ms, or --interval continuous`,
		}},
		{"required", func(m *MountFlags) { m.Source, m.Name = "", "a b" }, []string{
			`--source: required`,
			`--volume: volume name "a b": want letters, digits, '.', '_' and '-' (at most 64)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mountDefaults()
			m.Source, m.State, m.Mountpoint = "/srv/vms.real", "/var/lib/drfs/vms", "/srv/vms"
			tc.set(&m)
			h, err := FromMountFlags(m)
			checkErrors(t, h != nil, err, tc.want)
		})
	}
}

func TestFromServeFlags(t *testing.T) {
	f := ServeFlags{Dir: "/srv/replica", Listen: "0.0.0.0:9740", Certs: "/etc/drfs/certs", KeepPoints: 48,
		KeepFor: 24 * time.Hour, MaxConcurrentLogs: 4, Allow: map[string]string{"vms": "hq", "erp": "hq2"}}
	s, err := FromServeFlags(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Allow(), f.Allow) {
		t.Errorf("Allow() = %v, want %v", s.Allow(), f.Allow)
	}
	if s.Volumes[0].Name != "erp" || s.Volumes[1].Name != "vms" {
		t.Errorf("volumes not in name order: %+v %+v", s.Volumes[0], s.Volumes[1])
	}
	for _, v := range s.Volumes {
		if v.KeepPoints != 48 || v.KeepFor != 24*time.Hour {
			t.Errorf("volume %s has retention %d/%s, not the server's", v.Name, v.KeepPoints, v.KeepFor)
		}
	}

	f = ServeFlags{Dir: "rel", Listen: "192.0.2.1:9740", Insecure: true, Certs: "/c", KeepPoints: 0,
		MaxConcurrentLogs: 4, Allow: map[string]string{"vms": "Bad"}}
	_, err = FromServeFlags(f)
	if err == nil {
		t.Fatal("accepted")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`--listen: --insecure refuses to listen on 192.0.2.1: plaintext is only for loopback tests`,
		`--insecure: use either --certs or --insecure`,
		`--keep-points: "0": want a whole number from 1 to 2147483647`,
		`--allow: site name "Bad": want lower-case letters, digits and dashes (a DNS label)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestFromFlags_AsFile: what flags say, a file says the same way (Marshal writes it).
func TestFromFlags_AsFile(t *testing.T) {
	m := mountDefaults()
	m.Source, m.State, m.Mountpoint, m.Name = "/srv/vms.real", "/var/lib/drfs/vms", "/srv/vms", "vms"
	m.Replica, m.Insecure, m.Interval, m.BWLimit, m.Debug = "http://127.0.0.1:9740", true, "continuous", "5M", true
	h, err := FromMountFlags(m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if h2 := mustParse(t, string(b)); !reflect.DeepEqual(stripHost(h), stripHost(h2)) {
		t.Errorf("the file of the flags parses differently:\n%s", b)
	}

	s, err := FromServeFlags(ServeFlags{Dir: "/r", Listen: "127.0.0.1:9740", Insecure: true, KeepPoints: 24,
		MaxConcurrentLogs: 4, Allow: map[string]string{"vms": "insecure"}})
	if err != nil {
		t.Fatal(err)
	}
	if b, err = s.Marshal(); err != nil {
		t.Fatal(err)
	}
	s2, err := ParseServe("s.yaml", b)
	if err != nil || !reflect.DeepEqual(stripServe(s), stripServe(s2)) {
		t.Errorf("the file of the flags parses differently (%v):\n%s", err, b)
	}
}
