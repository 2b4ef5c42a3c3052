package config

// ServeChange is how the replica's file changed for one volume.
type ServeChange struct {
	Name string
	// Fields are the settings of the volume in force that differ: "allow", "keep-points",
	// "keep-for". A volume added to or removed from the file changes only if its settings
	// differ from the ones it had.
	Fields []string
}

// ServeDelta is what a reload of drfs serve's file changes.
type ServeDelta struct {
	// Default names the top-level retention keys that differ (keep-points, keep-for): the
	// retention of every volume the file does not list.
	Default []string
	Volumes []ServeChange // listed volumes (in either file): new file's order, then removed ones
	// Restart names the settings that differ and take effect only when drfs serve restarts
	// (dir, listen, certs, insecure, max-concurrent-logs, log.format, metrics.listen,
	// metrics.pprof).
	Restart []string
}

// Empty reports whether the reload changes nothing.
func (d ServeDelta) Empty() bool { return len(d.Default)+len(d.Volumes)+len(d.Restart) == 0 }

// DiffServe compares the running replica configuration old with new: which volumes' retention
// and allow binding a reload (SIGHUP) changes, and which settings need a restart. It compares
// what is in force for each volume (Serve.Retention, Serve.Allow), not how the file spells it.
func DiffServe(old, new *Serve) ServeDelta {
	var d ServeDelta
	add := func(list *[]string, differ bool, key string) {
		if differ {
			*list = append(*list, key)
		}
	}
	add(&d.Default, old.KeepPoints != new.KeepPoints, "keep-points")
	add(&d.Default, old.KeepFor != new.KeepFor, "keep-for")

	oa, na := old.Allow(), new.Allow()
	seen := map[string]bool{}
	volume := func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		c := ServeChange{Name: name}
		on, od := old.Retention(name)
		nn, nd := new.Retention(name)
		add(&c.Fields, oa[name] != na[name], "allow")
		add(&c.Fields, on != nn, "keep-points")
		add(&c.Fields, od != nd, "keep-for")
		if len(c.Fields) > 0 {
			d.Volumes = append(d.Volumes, c)
		}
	}
	for _, v := range new.Volumes {
		volume(v.Name)
	}
	for _, v := range old.Volumes {
		volume(v.Name)
	}

	add(&d.Restart, old.Dir != new.Dir, "dir")
	add(&d.Restart, old.Listen != new.Listen, "listen")
	add(&d.Restart, old.Certs != new.Certs, "certs")
	add(&d.Restart, old.Insecure != new.Insecure, "insecure")
	add(&d.Restart, old.MaxConcurrentLogs != new.MaxConcurrentLogs, "max-concurrent-logs")
	add(&d.Restart, old.Log != new.Log, "log.format")
	add(&d.Restart, old.Metrics.Listen != new.Metrics.Listen, "metrics.listen")
	add(&d.Restart, old.Metrics.Pprof != new.Metrics.Pprof, "metrics.pprof")
	return d
}

// KeepRestartSettings returns s with the settings that need a restart taken from old (the
// running process keeps them): the configuration a reload of s puts in force.
func (s *Serve) KeepRestartSettings(old *Serve) *Serve {
	next := *s
	next.Dir, next.Listen, next.Certs, next.Insecure = old.Dir, old.Listen, old.Certs, old.Insecure
	next.MaxConcurrentLogs, next.Log, next.Metrics = old.MaxConcurrentLogs, old.Log, old.Metrics
	return &next
}
