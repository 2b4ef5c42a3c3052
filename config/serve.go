package config

import (
	"fmt"
	"math"
	"net"
	"time"

	"go.yaml.in/yaml/v3"

	"drfs/changelog"
	"drfs/internal/netutil"
	"drfs/replica"
	"drfs/tlsutil"
)

// Keys of the replica's file; doc.go describes each.
var (
	serveKeys       = []string{"dir", "listen", "certs", "insecure", "max-concurrent-logs", "keep-points", "keep-for", "log", "metrics", "volumes"}
	serveVolumeKeys = []string{"name", "allow", "keep-points", "keep-for"}
)

// rawServe is a replica configuration as written, from a file or from flags.
type rawServe struct {
	line                                                       int
	dir, listen, certs, insecure, maxLogs, keepPoints, keepFor field
	logFormat, metricsListen, pprof                            field
	volumes                                                    []rawServeVolume
}

type rawServeVolume struct {
	line                             int
	name, allow, keepPoints, keepFor field
}

// ParseServe parses and validates the replica configuration data read from file, reporting
// every problem found, as Errors.
func ParseServe(file string, data []byte) (*Serve, error) {
	p := &parser{file: file}
	root := p.document(data)
	if root == nil {
		return nil, p.result()
	}
	s := p.serve(p.rawServe(root))
	if err := p.result(); err != nil {
		return nil, err
	}
	s.File = file
	return s, nil
}

func (p *parser) rawServe(root *yaml.Node) rawServe {
	m := p.mapping(root, "", serveKeys...)
	g := func(key string) field { return get(m, "", key, root.Line) }
	raw := rawServe{line: root.Line, dir: g("dir"), listen: g("listen"), certs: g("certs"), insecure: g("insecure"),
		maxLogs: g("max-concurrent-logs"), keepPoints: g("keep-points"), keepFor: g("keep-for")}
	raw.logFormat, raw.metricsListen, raw.pprof = p.logMetrics(m)
	for i, n := range p.list(g("volumes")) {
		path := fmt.Sprintf("volumes[%d]", i)
		vm := p.mapping(n, path, serveVolumeKeys...)
		g := func(key string) field { return get(vm, path, key, n.Line) }
		raw.volumes = append(raw.volumes, rawServeVolume{line: n.Line, name: g("name"), allow: g("allow"),
			keepPoints: g("keep-points"), keepFor: g("keep-for")})
	}
	return raw
}

func (p *parser) serve(raw rawServe) *Serve {
	s := &Serve{}
	s.Dir = p.absPath(raw.dir, true)
	s.Certs = p.absPath(raw.certs, false)
	s.Insecure = p.boolean(raw.insecure)
	if l, ok := p.scalar(raw.listen); !ok {
		p.fail(raw.listen, "required")
	} else if host, _, err := net.SplitHostPort(l); err != nil {
		p.fail(raw.listen, "%q: want HOST:PORT, e.g. 0.0.0.0:9740", l)
	} else {
		s.Listen = l
		if s.Insecure && !netutil.IsLoopbackHost(host) {
			p.fail(raw.listen, "%s refuses to listen on %s: plaintext is only for loopback tests", lastKey(raw.insecure.name), host)
		}
	}
	switch {
	case s.Insecure && raw.certs.set():
		p.fail(raw.insecure, "use either %s or %s", lastKey(raw.certs.name), lastKey(raw.insecure.name))
	case !s.Insecure && !raw.certs.set():
		p.fail(raw.certs, "required (create one with `drfs certs`), or set %s for a loopback test", lastKey(raw.insecure.name))
	}
	s.MaxConcurrentLogs = p.integer(raw.maxLogs, replica.DefaultMaxConcurrentLogs, 1, 1<<16)
	s.KeepPoints = p.integer(raw.keepPoints, DefaultKeepPoints, 1, math.MaxInt32)
	s.KeepFor = p.keepFor(raw.keepFor, 0)
	s.Log.Format = p.logFormat(raw.logFormat)
	s.Metrics.Listen = p.listenAddr(raw.metricsListen)
	s.Metrics.Pprof = p.boolean(raw.pprof)

	names := map[string]int{}
	for _, rv := range raw.volumes {
		v := &ServeVolume{line: rv.line}
		if name, ok := p.scalar(rv.name); !ok {
			if !rv.name.set() {
				p.fail(rv.name, "required")
			}
		} else if err := changelog.ValidVolumeID(name); err != nil {
			p.fail(rv.name, "volume name %q: want letters, digits, '.', '_' and '-' (at most %d)", name, changelog.MaxVolumeIDLen)
		} else if l, dup := names[name]; dup {
			p.fail(rv.name, "volume %q is also declared on line %d", name, l)
		} else {
			names[name] = rv.line
			v.Name = name
		}
		if site, ok := p.scalar(rv.allow); ok {
			if tlsutil.ValidSite(site) != nil && site != "insecure" {
				p.fail(rv.allow, "site name %q: want lower-case letters, digits and dashes (a DNS label)", site)
			}
			v.Allow = site
		}
		v.KeepPoints = p.integer(rv.keepPoints, s.KeepPoints, 1, math.MaxInt32)
		v.KeepFor = p.keepFor(rv.keepFor, s.KeepFor)
		s.Volumes = append(s.Volumes, v)
	}
	return s
}

// keepFor reads a retention period: a duration, 0 for none.
func (p *parser) keepFor(f field, def time.Duration) time.Duration {
	s, ok := p.scalar(f)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		p.fail(f, "%q: want a duration such as 24h or 168h (0 for none)", s)
		return def
	}
	return d
}
