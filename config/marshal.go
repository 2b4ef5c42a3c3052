package config

import (
	"bytes"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// The file's layout for Marshal; Parse reads the same keys (doc.go).
type (
	fileHost struct {
		Certs   string              `yaml:"certs,omitempty"`
		Socket  string              `yaml:"socket,omitempty"`
		Log     *fileLog            `yaml:"log,omitempty"`
		Metrics *fileMetrics        `yaml:"metrics,omitempty"`
		Sites   map[string]fileSite `yaml:"sites,omitempty"`
		Volumes []fileVolume        `yaml:"volumes"`
	}
	fileLog struct {
		Format string `yaml:"format"`
	}
	fileMetrics struct {
		Listen string `yaml:"listen,omitempty"`
		Pprof  bool   `yaml:"pprof,omitempty"`
	}
	fileSite struct {
		URL       string `yaml:"url"`
		Bandwidth string `yaml:"bandwidth,omitempty"`
		Certs     string `yaml:"certs,omitempty"`
		Insecure  bool   `yaml:"insecure,omitempty"`
	}
	fileVolume struct {
		Name               string `yaml:"name,omitempty"`
		Source             string `yaml:"source"`
		State              string `yaml:"state"`
		Mountpoint         string `yaml:"mountpoint"`
		Replica            string `yaml:"replica,omitempty"`
		Interval           string `yaml:"interval,omitempty"`
		RPO                string `yaml:"rpo,omitempty"`
		Tier               int    `yaml:"tier,omitempty"`
		JournalMax         string `yaml:"journal-max,omitempty"`
		CheckpointInterval string `yaml:"checkpoint-interval"`
		SegmentSize        string `yaml:"segment-size"`
		SkipUnreplayable   bool   `yaml:"skip-unreplayable,omitempty"`
		Debug              bool   `yaml:"debug,omitempty"`
	}
	fileServe struct {
		Dir               string            `yaml:"dir"`
		Listen            string            `yaml:"listen"`
		Certs             string            `yaml:"certs,omitempty"`
		Insecure          bool              `yaml:"insecure,omitempty"`
		MaxConcurrentLogs int               `yaml:"max-concurrent-logs"`
		KeepPoints        int               `yaml:"keep-points"`
		KeepFor           string            `yaml:"keep-for,omitempty"`
		Log               *fileLog          `yaml:"log,omitempty"`
		Metrics           *fileMetrics      `yaml:"metrics,omitempty"`
		Volumes           []fileServeVolume `yaml:"volumes,omitempty"`
	}
	fileServeVolume struct {
		Name       string `yaml:"name"`
		Allow      string `yaml:"allow,omitempty"`
		KeepPoints int    `yaml:"keep-points"`
		KeepFor    string `yaml:"keep-for,omitempty"`
	}
)

// Marshal writes h as a configuration file that Parse reads back to an equal Host, every
// default spelled out (drfs daemon --print-config, or flags turned into a file).
func (h *Host) Marshal() ([]byte, error) {
	f := fileHost{Certs: h.Certs, Socket: h.Socket, Log: &fileLog{h.Log.Format}, Metrics: marshalMetrics(h.Metrics)}
	if len(h.Sites) > 0 {
		f.Sites = map[string]fileSite{}
	}
	for name, s := range h.Sites {
		f.Sites[name] = fileSite{URL: s.URL, Bandwidth: bytesString(s.Bandwidth), Certs: s.Certs, Insecure: s.Insecure}
	}
	for _, v := range h.Volumes {
		fv := fileVolume{Source: v.Source, State: v.State, Mountpoint: v.Mountpoint,
			CheckpointInterval: v.CheckpointInterval.String(), SegmentSize: bytesString(v.SegmentSize),
			SkipUnreplayable: v.SkipUnreplayable, Debug: v.Debug}
		if v.named {
			fv.Name = v.Name
		}
		if v.Replica != "" {
			fv.Replica, fv.Tier, fv.JournalMax = v.Replica, v.Tier, bytesString(v.JournalMax)
			switch s := v.Schedule; {
			case s.Continuous:
				fv.Interval = "continuous"
			case s.RPO > 0:
				fv.RPO = s.RPO.String()
			default:
				fv.Interval = s.Interval.String()
			}
		}
		f.Volumes = append(f.Volumes, fv)
	}
	return encode(f)
}

// Marshal writes s as a configuration file that ParseServe reads back to an equal Serve.
func (s *Serve) Marshal() ([]byte, error) {
	f := fileServe{Dir: s.Dir, Listen: s.Listen, Certs: s.Certs, Insecure: s.Insecure,
		MaxConcurrentLogs: s.MaxConcurrentLogs, KeepPoints: s.KeepPoints, KeepFor: durationString(s.KeepFor),
		Log: &fileLog{s.Log.Format}, Metrics: marshalMetrics(s.Metrics)}
	for _, v := range s.Volumes {
		// A volume's keep-for is always written: absent, it would be the server's.
		f.Volumes = append(f.Volumes, fileServeVolume{Name: v.Name, Allow: v.Allow, KeepPoints: v.KeepPoints,
			KeepFor: v.KeepFor.String()})
	}
	return encode(f)
}

func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func marshalMetrics(m Metrics) *fileMetrics {
	if m == (Metrics{}) {
		return nil
	}
	return &fileMetrics{Listen: m.Listen, Pprof: m.Pprof}
}

// bytesString writes n exactly ("" for 0), in the largest unit that divides it.
func bytesString(n int64) string {
	if n == 0 {
		return ""
	}
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func durationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}
