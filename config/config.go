package config

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"drfs/shipper"
	"drfs/volume"
)

// Defaults of the fields a file may leave out (the same as the flags' defaults).
const (
	DefaultSegmentSize = 64 << 20
	DefaultKeepPoints  = 24
	DefaultLogFormat   = "text"
	// LowestTier is the tier of a volume that names none; 1 is the most important.
	LowestTier = 9
	// MinSegmentSize is the smallest journal segment drfs accepts.
	MinSegmentSize = 1 << 20
	// MinRPO is the smallest RPO target: below it, use interval: continuous.
	MinRPO = 100 * time.Millisecond
	// DefaultSocket is the daemon's socket when the file names none.
	DefaultSocket = "/run/drfs/drfs.sock"
	// DefaultFile is the daemon's configuration file when drfs daemon, status and reload name
	// none.
	DefaultFile = "/etc/drfs/drfs.yaml"
)

// Host is the configuration of `drfs daemon`: every volume of a primary host.
type Host struct {
	// File is the name the configuration was read from ("" when built from flags).
	File  string
	Certs string // default certificate directory of this site (ca.pem, primary.pem, key.pem)
	// Socket is the unix socket on which the daemon answers drfs status and drfs reload.
	Socket  string
	Log     Log
	Metrics Metrics
	Sites   map[string]*Site // replica sites by name
	Volumes []*Volume        // in file order; names and paths are unique
}

// Log configures the daemon's log.
type Log struct {
	Format string // "text" or "json"
}

// Metrics configures the Prometheus endpoint; an empty Listen serves none.
type Metrics struct {
	Listen string // host:port
	Pprof  bool   // also serve Go profiles on a non-loopback address
}

// Site is a replica target that volumes share, and the link to it.
type Site struct {
	Name string
	URL  string // https://HOST:PORT, http://LOOPBACK:PORT (Insecure), file:///DIR or export:///DIR
	// Bandwidth is the link budget in bytes per second shared by every volume replicating
	// to the site; 0 means measured from the link's real throughput.
	Bandwidth int64
	Certs     string // certificate directory; the host's Certs when unset
	Insecure  bool   // allow a plaintext http:// URL on a loopback address (tests only)

	line int
}

// Volume is one volume: one consistency group with its own source, state and mountpoint.
type Volume struct {
	Name       string
	Source     string // absolute and clean, as are State and Mountpoint
	State      string
	Mountpoint string

	Replica    string           // site name; "" replicates nowhere
	Schedule   shipper.Schedule // zero without a replica
	Tier       int              // 1 (most important) .. LowestTier
	JournalMax int64            // bytes kept for an absent replica; 0 is the shipper's default

	CheckpointInterval time.Duration
	SegmentSize        int64
	SkipUnreplayable   bool
	Debug              bool // log every FUSE request

	line  int
	named bool // Name was given, not defaulted from the source
}

// Line is the line of the file the volume's entry starts on (0 when built from flags).
func (v *Volume) Line() int { return v.line }

// Line is the line of the file the site's entry starts on (0 when built from flags).
func (s *Site) Line() int { return s.line }

// VolumeConfig returns what volume.Open needs to open v (without a Logger). A name that was
// not given is left to the state directory: an existing volume keeps the name it was created
// with (a promoted replica's data directory is not named after the volume), a new one is named
// after its source.
func (v *Volume) VolumeConfig() volume.Config {
	name := v.Name
	if !v.named {
		name = ""
	}
	return volume.Config{
		Source: v.Source, State: v.State, Mountpoint: v.Mountpoint, Name: name,
		CheckpointInterval: v.CheckpointInterval, SegmentSize: v.SegmentSize,
		SkipUnreplayable: v.SkipUnreplayable,
	}
}

// Volume returns the volume named name, or nil.
func (h *Host) Volume(name string) *Volume {
	for _, v := range h.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// Site returns the replica site of v, or nil when v does not replicate.
func (h *Host) Site(v *Volume) *Site {
	if v.Replica == "" {
		return nil
	}
	return h.Sites[v.Replica]
}

// TLS reports whether the site is reached over HTTPS, with certificates.
func (s *Site) TLS() bool {
	u, err := url.Parse(s.URL)
	return err == nil && u.Scheme == "https"
}

// SiteCerts is the certificate directory used towards site s.
func (h *Host) SiteCerts(s *Site) string {
	if s.Certs != "" {
		return s.Certs
	}
	return h.Certs
}

// Serve is the configuration of `drfs serve`: the replica side.
type Serve struct {
	File              string
	Dir               string // replica directory: volume V lives in Dir/V/data and Dir/V/state
	Listen            string
	Certs             string
	Insecure          bool
	MaxConcurrentLogs int
	// KeepPoints and KeepFor are the retention of a volume that sets none itself.
	KeepPoints int
	KeepFor    time.Duration
	Log        Log
	Metrics    Metrics
	Volumes    []*ServeVolume // in file order; names are unique
}

// ServeVolume is what the replica site decides about one volume.
type ServeVolume struct {
	Name string
	// Allow binds the volume to the primary of this site ("insecure" on a plaintext test
	// server); "" binds it to the first primary that uses it.
	Allow      string
	KeepPoints int
	KeepFor    time.Duration

	line int
}

// Line is the line of the file the volume's entry starts on (0 when built from flags).
func (v *ServeVolume) Line() int { return v.line }

// Allow returns the VOLUME=SITE bindings (replica.Access.Allow).
func (s *Serve) Allow() map[string]string {
	m := map[string]string{}
	for _, v := range s.Volumes {
		if v.Allow != "" {
			m[v.Name] = v.Allow
		}
	}
	return m
}

// Volume returns the volume named name, or nil.
func (s *Serve) Volume(name string) *ServeVolume {
	for _, v := range s.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// Retention is the retention of volume name: its own, or the server's default.
func (s *Serve) Retention(name string) (keepPoints int, keepFor time.Duration) {
	if v := s.Volume(name); v != nil {
		return v.KeepPoints, v.KeepFor
	}
	return s.KeepPoints, s.KeepFor
}

// Error is one problem in a configuration: where it is and what is wrong.
type Error struct {
	File  string // "" when the configuration came from flags
	Line  int    // 0 when unknown (flags)
	Field string // volumes[1].journal-max, --journal-max, ...
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration, in file order. Parse returns all of them,
// not only the first.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
	return es
}
