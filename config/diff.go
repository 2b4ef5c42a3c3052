package config

import "slices"

// Scope is how much of a running volume a change touches.
type Scope int

const (
	// ScopeSchedule changes only how the volume is shipped (schedule, tier, journal-max):
	// applied in place; the mount and the connection to the replica stay.
	ScopeSchedule Scope = iota + 1
	// ScopeReplication changes the replica target (site, URL, certificates): the shipper
	// reconnects; the mount stays.
	ScopeReplication
	// ScopeMount changes the volume itself (paths, journal, checkpoints): it is unmounted
	// and mounted again.
	ScopeMount
)

func (s Scope) String() string {
	switch s {
	case ScopeSchedule:
		return "schedule"
	case ScopeReplication:
		return "replication"
	case ScopeMount:
		return "mount"
	}
	return "none"
}

// Change is how one volume differs between two configurations.
type Change struct {
	Name   string
	Fields []string // the keys that differ, e.g. ["rpo", "tier"] or ["state"]
	Scope  Scope    // the widest scope of Fields
}

// Delta is what a reload from one daemon configuration to another does.
type Delta struct {
	Added     []string // volumes to bring up, in the new file's order
	Removed   []string // volumes to unmount, in the old file's order
	Changed   []Change // in the new file's order
	Untouched []string // volumes that must not notice the reload
	// Bandwidth names the sites whose link budget changed (applied by the link scheduler;
	// no volume changes for it).
	Bandwidth []string
	// Process names the process-wide settings that differ (log.format, metrics.listen, ...);
	// they take effect when the daemon restarts.
	Process []string
}

// Empty reports whether the reload changes nothing.
func (d Delta) Empty() bool {
	return len(d.Added)+len(d.Removed)+len(d.Changed)+len(d.Bandwidth)+len(d.Process) == 0
}

// Diff compares the running configuration old with new, volume by volume (by name): what a
// reload (SIGHUP) must bring up, take down, change and leave alone.
func Diff(old, new *Host) Delta {
	var d Delta
	for _, v := range old.Volumes {
		if new.Volume(v.Name) == nil {
			d.Removed = append(d.Removed, v.Name)
		}
	}
	for _, nv := range new.Volumes {
		ov := old.Volume(nv.Name)
		if ov == nil {
			d.Added = append(d.Added, nv.Name)
			continue
		}
		if c := diffVolume(old, ov, new, nv); c.Scope != 0 {
			d.Changed = append(d.Changed, c)
		} else {
			d.Untouched = append(d.Untouched, nv.Name)
		}
	}
	for _, name := range sortedKeys(new.Sites) {
		if os, ok := old.Sites[name]; ok && os.Bandwidth != new.Sites[name].Bandwidth {
			d.Bandwidth = append(d.Bandwidth, name)
		}
	}
	if old.Socket != new.Socket {
		d.Process = append(d.Process, "socket")
	}
	if old.Log != new.Log {
		d.Process = append(d.Process, "log.format")
	}
	if old.Metrics.Listen != new.Metrics.Listen {
		d.Process = append(d.Process, "metrics.listen")
	}
	if old.Metrics.Pprof != new.Metrics.Pprof {
		d.Process = append(d.Process, "metrics.pprof")
	}
	return d
}

func diffVolume(oh *Host, o *Volume, nh *Host, n *Volume) Change {
	c := Change{Name: n.Name}
	add := func(differ bool, key string, s Scope) {
		if differ {
			c.Fields = append(c.Fields, key)
			c.Scope = max(c.Scope, s)
		}
	}
	add(o.Source != n.Source, "source", ScopeMount)
	add(o.State != n.State, "state", ScopeMount)
	add(o.Mountpoint != n.Mountpoint, "mountpoint", ScopeMount)
	add(o.CheckpointInterval != n.CheckpointInterval, "checkpoint-interval", ScopeMount)
	add(o.SegmentSize != n.SegmentSize, "segment-size", ScopeMount)
	add(o.SkipUnreplayable != n.SkipUnreplayable, "skip-unreplayable", ScopeMount)
	add(o.Debug != n.Debug, "debug", ScopeMount)
	add(o.Replica != n.Replica, "replica", ScopeReplication)
	if os, ns := oh.Site(o), nh.Site(n); os != nil && ns != nil && o.Replica == n.Replica {
		add(os.URL != ns.URL, "sites."+n.Replica+".url", ScopeReplication)
		add(ns.TLS() && oh.SiteCerts(os) != nh.SiteCerts(ns), "sites."+n.Replica+".certs", ScopeReplication)
		add(os.Insecure != ns.Insecure, "sites."+n.Replica+".insecure", ScopeReplication)
	}
	add(o.Schedule.Interval != n.Schedule.Interval || o.Schedule.Continuous != n.Schedule.Continuous, "interval", ScopeSchedule)
	add(o.Schedule.RPO != n.Schedule.RPO, "rpo", ScopeSchedule)
	add(o.Tier != n.Tier, "tier", ScopeSchedule)
	add(o.JournalMax != n.JournalMax, "journal-max", ScopeSchedule)
	return c
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
