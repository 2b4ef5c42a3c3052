package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"drfs/changelog"
	"drfs/internal/netutil"
	"drfs/internal/units"
	"drfs/shipper"
	"drfs/tlsutil"
	"drfs/volume"
)

// Keys of the daemon's file; doc.go describes each.
var (
	hostKeys    = []string{"certs", "socket", "log", "metrics", "sites", "volumes"}
	logKeys     = []string{"format"}
	metricsKeys = []string{"listen", "pprof"}
	siteKeys    = []string{"url", "bandwidth", "certs", "insecure"}
	volumeKeys  = []string{"name", "source", "state", "mountpoint", "replica", "interval", "rpo", "tier",
		"journal-max", "checkpoint-interval", "segment-size", "skip-unreplayable", "debug"}
)

// rawHost is a daemon configuration as written, from a file or from flags, before validation.
type rawHost struct {
	certs, socket, logFormat, metricsListen, pprof field
	sites                                          []rawSite
	volumes                                        []rawVolume
	volumesField                                   field
}

type rawSite struct {
	name                            string
	line                            int
	path                            string // sites.NAME, or "" for flags
	url, bandwidth, certs, insecure field
}

type rawVolume struct {
	path string // volumes[i], or "" for flags
	line int
	name, source, state, mountpoint, replica, interval, rpo, tier,
	journalMax, checkpoint, segmentSize, skip, debug field
}

// Parse parses and validates the daemon configuration data read from file (file names the
// configuration in errors). Every problem found is reported, as Errors, and no Host is returned
// unless there is none.
func Parse(file string, data []byte) (*Host, error) {
	p := &parser{file: file}
	root := p.document(data)
	if root == nil {
		return nil, p.result()
	}
	raw := p.rawHost(root)
	h := p.host(raw)
	if err := p.result(); err != nil {
		return nil, err
	}
	h.File = file
	return h, nil
}

func (p *parser) rawHost(root *yaml.Node) rawHost {
	m := p.mapping(root, "", hostKeys...)
	raw := rawHost{certs: get(m, "", "certs", root.Line), socket: get(m, "", "socket", root.Line),
		volumesField: get(m, "", "volumes", root.Line)}
	raw.logFormat, raw.metricsListen, raw.pprof = p.logMetrics(m)
	for _, e := range p.entries(m["sites"]) {
		path := "sites." + e.key.Value
		s := rawSite{name: e.key.Value, line: e.key.Line, path: path}
		sm := map[string]field{}
		if !isNull(e.val) {
			sm = p.mapping(e.val, path, siteKeys...)
		}
		s.url, s.bandwidth = get(sm, path, "url", e.key.Line), get(sm, path, "bandwidth", e.key.Line)
		s.certs, s.insecure = get(sm, path, "certs", e.key.Line), get(sm, path, "insecure", e.key.Line)
		raw.sites = append(raw.sites, s)
	}
	for i, n := range p.list(raw.volumesField) {
		path := fmt.Sprintf("volumes[%d]", i)
		vm := p.mapping(n, path, volumeKeys...)
		g := func(key string) field { return get(vm, path, key, n.Line) }
		raw.volumes = append(raw.volumes, rawVolume{path: path, line: n.Line,
			name: g("name"), source: g("source"), state: g("state"), mountpoint: g("mountpoint"),
			replica: g("replica"), interval: g("interval"), rpo: g("rpo"), tier: g("tier"),
			journalMax: g("journal-max"), checkpoint: g("checkpoint-interval"),
			segmentSize: g("segment-size"), skip: g("skip-unreplayable"), debug: g("debug")})
	}
	return raw
}

// logMetrics reads the log and metrics sections both files have.
func (p *parser) logMetrics(m map[string]field) (format, listen, pprof field) {
	lm, mm := map[string]field{}, map[string]field{}
	if f := m["log"]; f.set() {
		lm = p.mapping(f.node, "log", logKeys...)
	}
	if f := m["metrics"]; f.set() {
		mm = p.mapping(f.node, "metrics", metricsKeys...)
	}
	return get(lm, "log", "format", 0), get(mm, "metrics", "listen", 0), get(mm, "metrics", "pprof", 0)
}

func (p *parser) logFormat(f field) string {
	s, ok := p.scalar(f)
	if !ok {
		return DefaultLogFormat
	}
	if s != "text" && s != "json" {
		p.fail(f, "%q: want text or json", s)
	}
	return s
}

func (p *parser) listenAddr(f field) string {
	s, ok := p.scalar(f)
	if !ok {
		return ""
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		p.fail(f, "%q: want HOST:PORT, e.g. 127.0.0.1:9750", s)
	}
	return s
}

// absPath reads a directory path, which must be absolute; it is returned clean.
func (p *parser) absPath(f field, required bool) string {
	s, ok := p.scalar(f)
	if !ok {
		if required {
			p.fail(f, "required")
		}
		return ""
	}
	if !filepath.IsAbs(s) {
		p.fail(f, "%q: want an absolute path", s)
		return ""
	}
	return filepath.Clean(s)
}

func (p *parser) duration(f field) (time.Duration, bool) {
	s, ok := p.scalar(f)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		p.fail(f, "%q: want a positive duration such as 30s, 5m or 1h30m", s)
		return 0, false
	}
	return d, true
}

func (p *parser) size(f field) (int64, bool) {
	s, ok := p.scalar(f)
	if !ok {
		return 0, false
	}
	n, err := units.ParseBytes(s)
	if err != nil {
		p.fail(f, "%v", err)
		return 0, false
	}
	return n, true
}

func (p *parser) host(raw rawHost) *Host {
	h := &Host{Sites: map[string]*Site{}}
	h.Certs = p.absPath(raw.certs, false)
	if h.Socket = p.absPath(raw.socket, false); h.Socket == "" {
		h.Socket = DefaultSocket
	}
	h.Log.Format = p.logFormat(raw.logFormat)
	h.Metrics.Listen = p.listenAddr(raw.metricsListen)
	h.Metrics.Pprof = p.boolean(raw.pprof)
	for _, rs := range raw.sites {
		if s := p.site(rs, h.Certs); s != nil {
			h.Sites[s.Name] = s
		}
	}
	if f := raw.volumesField; len(raw.volumes) == 0 && (!f.set() || f.node.Kind == yaml.SequenceNode) {
		p.fail(raw.volumesField, "no volume declared")
	}
	names := map[string]*Volume{}
	for _, rv := range raw.volumes {
		v := p.volume(rv, raw, h)
		if v.Name != "" {
			if o := names[v.Name]; o != nil {
				f := rv.name
				if !f.set() {
					f = field{name: rv.source.name, line: rv.source.line}
				}
				p.fail(f, "volume name %q is also the name of the volume on line %d", v.Name, o.line)
			} else {
				names[v.Name] = v
			}
		}
		h.Volumes = append(h.Volumes, v)
	}
	p.overlaps(raw, h)
	return h
}

func (p *parser) site(rs rawSite, hostCerts string) *Site {
	s := &Site{Name: rs.name, line: rs.line}
	if tlsutil.ValidSite(rs.name) != nil {
		p.errorf(rs.path, rs.line, "site name %q: want lower-case letters, digits and dashes (a DNS label)", rs.name)
	}
	s.Certs = p.absPath(rs.certs, false)
	s.Insecure = p.boolean(rs.insecure)
	if bw, ok := p.size(rs.bandwidth); ok {
		if bw == 0 {
			p.fail(rs.bandwidth, "%q: leave bandwidth unset to measure the link", rs.bandwidth.node.Value)
		}
		s.Bandwidth = bw
	}
	raw, ok := p.scalar(rs.url)
	if !ok {
		if !rs.url.set() {
			p.fail(rs.url, "required")
		}
		return s
	}
	s.URL = raw
	u, err := url.Parse(raw)
	if err != nil {
		p.fail(rs.url, "%q is not a URL", raw)
		return s
	}
	certs := s.Certs
	if certs == "" {
		certs = hostCerts
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			p.fail(rs.url, "%q: want https://HOST:PORT", raw)
		} else if certs == "" {
			p.fail(rs.url, "an https replica needs %s, a certificate directory (create one with `drfs certs`)", lastKey(rs.certs.name))
		}
	case "http":
		host := u.Hostname()
		switch {
		case !s.Insecure:
			p.fail(rs.url, "%q is plaintext: use https, or set %s for a loopback test", raw, lastKey(rs.insecure.name))
		case !netutil.IsLoopbackHost(host):
			p.fail(rs.url, "%q: plaintext is only for loopback tests", raw)
		}
	case "file", "export":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			p.fail(rs.url, "%q: want %s:///ABSOLUTE/DIR", raw, u.Scheme)
		}
	default:
		p.fail(rs.url, "%q: want https://HOST:PORT, file:///DIR or export:///DIR", raw)
	}
	return s
}

func (p *parser) volume(rv rawVolume, raw rawHost, h *Host) *Volume {
	v := &Volume{line: rv.line, Tier: LowestTier, CheckpointInterval: volume.DefaultCheckpointInterval,
		SegmentSize: DefaultSegmentSize}
	v.Source = p.absPath(rv.source, true)
	v.State = p.absPath(rv.state, true)
	v.Mountpoint = p.absPath(rv.mountpoint, true)
	if name, ok := p.scalar(rv.name); ok {
		v.Name, v.named = name, true
	} else if v.Source != "" {
		v.Name = filepath.Base(v.Source)
	}
	if v.Name != "" {
		if err := changelog.ValidVolumeID(v.Name); err != nil {
			f := rv.name
			if !f.set() {
				f = rv.source
			}
			p.fail(f, "volume name %q: want letters, digits, '.', '_' and '-' (at most %d)", v.Name, changelog.MaxVolumeIDLen)
			v.Name = ""
		}
	}
	if d, ok := p.duration(rv.checkpoint); ok {
		v.CheckpointInterval = d
	}
	if n, ok := p.size(rv.segmentSize); ok {
		if n < MinSegmentSize {
			p.fail(rv.segmentSize, "%q: want at least 1M", rv.segmentSize.node.Value)
		}
		v.SegmentSize = n
	}
	v.SkipUnreplayable = p.boolean(rv.skip)
	v.Debug = p.boolean(rv.debug)

	site, ok := p.scalar(rv.replica)
	if !ok {
		for _, f := range []field{rv.interval, rv.rpo, rv.tier, rv.journalMax} {
			if f.set() {
				p.fail(f, "only applies to a replicated volume (set %s)", lastKey(rv.replica.name))
			}
		}
		return v
	}
	v.Replica = site
	if h.Sites[site] == nil && !definedSite(raw, site) {
		p.fail(rv.replica, "site %q is not defined under sites", site)
	}
	v.Tier = p.integer(rv.tier, LowestTier, 1, LowestTier)
	if n, ok := p.size(rv.journalMax); ok {
		v.JournalMax = n
	}
	v.Schedule = p.schedule(rv.interval, rv.rpo)
	return v
}

// definedSite reports whether raw declares site name, even if the site itself had errors.
func definedSite(raw rawHost, name string) bool {
	for _, s := range raw.sites {
		if s.name == name {
			return true
		}
	}
	return false
}

func lastKey(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// schedule reads interval (a duration or "continuous") and rpo; neither means every 30s.
func (p *parser) schedule(interval, rpo field) shipper.Schedule {
	if interval.set() && rpo.set() {
		p.fail(rpo, "use either %s or %s, not both", lastKey(interval.name), lastKey(rpo.name))
		return shipper.Schedule{}
	}
	if rpo.set() {
		d, ok := p.duration(rpo)
		if ok && d < MinRPO {
			p.fail(rpo, "%s is too small: use at least %s, or %s continuous", d, MinRPO, lastKey(interval.name))
		}
		return shipper.Schedule{RPO: d}
	}
	if !interval.set() {
		return shipper.Schedule{Interval: DefaultInterval}
	}
	s, ok := p.scalar(interval)
	if !ok {
		return shipper.Schedule{}
	}
	if s == "continuous" {
		return shipper.Schedule{Continuous: true}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		p.fail(interval, "%q: want a positive duration such as 30s or 5m, or continuous", s)
	}
	return shipper.Schedule{Interval: d}
}

// DefaultInterval is the schedule of a replicated volume that names none.
const DefaultInterval = 30 * time.Second

// pathUse is one directory a configuration claims.
type pathUse struct {
	path, kind string // kind: source, state, mountpoint, replica directory
	owner      string // volume name, or "site NAME"
	vol        int    // index of the volume, -1 for a site
	f          field
}

// overlaps reports every directory that is, or is inside, another one the configuration
// claims: within a volume (a state inside its source would journal its own journal) and across
// volumes (each volume is its own consistency group, and a state directory belongs to one).
// The check is lexical; volume.Open checks the real directories again when it opens them.
func (p *parser) overlaps(raw rawHost, h *Host) {
	var uses []pathUse
	for i, v := range h.Volumes {
		rv := raw.volumes[i]
		owner := v.Name
		if owner == "" {
			owner = rv.path
		}
		for _, u := range []pathUse{
			{v.Source, "source", owner, i, rv.source},
			{v.State, "state", owner, i, rv.state},
			{v.Mountpoint, "mountpoint", owner, i, rv.mountpoint},
		} {
			if u.path != "" {
				uses = append(uses, u)
			}
		}
	}
	var siteNames []string
	for name := range h.Sites {
		siteNames = append(siteNames, name)
	}
	sort.Strings(siteNames)
	for _, name := range siteNames {
		s := h.Sites[name]
		if u, err := url.Parse(s.URL); err == nil && (u.Scheme == "file" || u.Scheme == "export") && filepath.IsAbs(u.Path) {
			for _, rs := range raw.sites {
				if rs.name == name {
					uses = append(uses, pathUse{filepath.Clean(u.Path), "replica directory", "site " + name, -1, rs.url})
				}
			}
		}
	}
	for i, a := range uses {
		for j, b := range uses {
			if i == j || (a.vol < 0 && b.vol < 0) || !within(a.path, b.path) {
				continue
			}
			equal := a.path == b.path
			if equal && j > i {
				continue // reported once, on the later entry
			}
			var whose string
			switch {
			case a.vol == b.vol:
				whose = "this volume's " + b.kind
			case b.vol < 0:
				whose = fmt.Sprintf("the %s of %s (line %d)", b.kind, b.owner, b.f.line)
			default:
				whose = fmt.Sprintf("the %s of volume %q (line %d)", b.kind, b.owner, b.f.line)
			}
			switch {
			case equal && a.kind == "state" && b.kind == "state":
				p.fail(a.f, "%s is also %s: two volumes cannot share a state directory", a.path, whose)
			case equal:
				p.fail(a.f, "%s is also %s", a.path, whose)
			default:
				p.fail(a.f, "%s is inside %s", a.path, whose)
			}
		}
	}
}

// within reports whether p is dir or below it (both clean and absolute).
func within(p, dir string) bool {
	if p == dir || dir == "/" {
		return true
	}
	return strings.HasPrefix(p, dir+"/")
}

// SocketOf returns the daemon socket a configuration file names, read leniently (the file may
// have other problems): drfs reload must reach the daemon running the old configuration to
// hear why a new one is refused.
func SocketOf(data []byte) string {
	var f struct {
		Socket string `yaml:"socket"`
	}
	if yaml.Unmarshal(data, &f) != nil {
		// Not even YAML: the top-level line, as written.
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "socket:"); ok {
				v, _, _ = strings.Cut(v, "#")
				f.Socket = strings.Trim(strings.TrimSpace(v), `"'`)
			}
		}
	}
	if filepath.IsAbs(f.Socket) {
		return filepath.Clean(f.Socket)
	}
	return DefaultSocket
}
