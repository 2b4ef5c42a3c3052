package config

import (
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// MountFlags are the options of `drfs mount`, one volume: FromMountFlags turns them into the
// daemon's configuration so that flags and file share one validation and one code path.
type MountFlags struct {
	Source, State, Name, Mountpoint string
	Metrics                         string
	Pprof                           bool
	CheckpointInterval              time.Duration
	SegmentSize                     string
	Debug, SkipUnreplayable         bool
	LogFormat                       string

	Replica    string // --replica URL
	Interval   string
	RPO        time.Duration
	BWLimit    string
	JournalMax string
	Certs      string
	Insecure   bool
}

// absFlag is the path flag name with value v made absolute from the working directory.
func absFlag(name, v string) field {
	if v != "" {
		if a, err := filepath.Abs(v); err == nil {
			v = a
		}
	}
	return flagField(name, v)
}

// ReplicaSite is the name FromMountFlags gives the site of --replica.
const ReplicaSite = "replica"

// FromMountFlags returns the configuration of one volume mounted with flags. Relative paths
// are made absolute from the working directory. Errors name the flag.
func FromMountFlags(m MountFlags) (*Host, error) {
	p := &parser{}
	raw := rawHost{
		certs:         absFlag("--certs", m.Certs),
		logFormat:     flagField("--log-format", m.LogFormat),
		metricsListen: flagField("--metrics", m.Metrics),
		pprof:         flagBool("--pprof", m.Pprof),
	}
	v := rawVolume{
		name: flagField("--volume", m.Name), source: absFlag("--source", m.Source), state: absFlag("--state", m.State),
		mountpoint: absFlag("MOUNTPOINT", m.Mountpoint), replica: flagField("--replica", ""),
		interval: flagField("--interval", m.Interval), rpo: flagDuration("--rpo", m.RPO),
		tier: flagField("--tier", ""), journalMax: flagField("--journal-max", m.JournalMax),
		checkpoint: flagDuration("--checkpoint-interval", m.CheckpointInterval), segmentSize: flagField("--segment-size", m.SegmentSize),
		skip: flagBool("--skip-unreplayable", m.SkipUnreplayable), debug: flagBool("--debug", m.Debug),
	}
	if m.Replica != "" {
		v.replica = flagField("--replica", ReplicaSite)
		bw := m.BWLimit
		if bw == "0" { // --bwlimit 0 was "no limit"
			bw = ""
		}
		raw.sites = []rawSite{{name: ReplicaSite, url: flagField("--replica", m.Replica),
			bandwidth: flagField("--bwlimit", bw), certs: flagField("--certs", ""), insecure: flagBool("--insecure", m.Insecure)}}
	} else if m.BWLimit != "" {
		p.fail(flagField("--bwlimit", m.BWLimit), "only applies to a replicated volume (set --replica)")
	}
	raw.volumes = []rawVolume{v}
	h := p.host(raw)
	if err := p.result(); err != nil {
		return nil, err
	}
	return h, nil
}

// ServeFlags are the options of `drfs serve` as its flags parse them, defaults included.
type ServeFlags struct {
	Dir, Listen, Certs, Metrics string
	Insecure, Pprof             bool
	KeepPoints                  int
	KeepFor                     time.Duration
	Allow                       map[string]string // --allow VOLUME=SITE
	MaxConcurrentLogs           int
	LogFormat                   string
}

// FromServeFlags returns the replica configuration given by flags: one volume entry per
// --allow binding, each with the server's retention. Errors name the flag.
func FromServeFlags(f ServeFlags) (*Serve, error) {
	p := &parser{}
	raw := rawServe{
		dir: absFlag("--dir", f.Dir), listen: flagField("--listen", f.Listen), certs: absFlag("--certs", f.Certs),
		insecure: flagBool("--insecure", f.Insecure), maxLogs: flagInt("--max-concurrent-logs", f.MaxConcurrentLogs),
		keepPoints: flagInt("--keep-points", f.KeepPoints), keepFor: flagDuration("--keep-for", f.KeepFor),
		logFormat: flagField("--log-format", f.LogFormat), metricsListen: flagField("--metrics", f.Metrics),
		pprof: flagBool("--pprof", f.Pprof),
	}
	names := make([]string, 0, len(f.Allow))
	for name := range f.Allow {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		raw.volumes = append(raw.volumes, rawServeVolume{name: flagField("--allow", name),
			allow: flagField("--allow", f.Allow[name]), keepPoints: flagField("--keep-points", ""), keepFor: flagField("--keep-for", "")})
	}
	s := p.serve(raw)
	if err := p.result(); err != nil {
		return nil, err
	}
	return s, nil
}

func flagBool(name string, v bool) field {
	if !v {
		return field{name: name}
	}
	return field{name: name, node: &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"}}
}

func flagInt(name string, v int) field { return flagField(name, strconv.Itoa(v)) }

// flagDuration is a duration flag; 0 is unset (the default applies).
func flagDuration(name string, d time.Duration) field {
	if d == 0 {
		return field{name: name}
	}
	return flagField(name, d.String())
}
