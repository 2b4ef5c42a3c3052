package config

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that the parsers never panic, return a configuration only without an
// error, report every error with the file's name and a line inside the file, and that what
// they accept is written back by Marshal to a file that parses to an equal configuration.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range seeds {
		f.Add(mustRead(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := Parse("f.yaml", data)
		checkFuzzErrors(t, data, h != nil, err)
		if err == nil {
			b, err := h.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			h2, err := Parse("f.yaml", b)
			if err != nil {
				t.Fatalf("parsing what Marshal wrote: %v\n%s", err, b)
			}
			if !reflect.DeepEqual(stripHost(h), stripHost(h2)) {
				t.Fatalf("Marshal and Parse changed the configuration:\n%s", b)
			}
		}
		s, err := ParseServe("f.yaml", data)
		checkFuzzErrors(t, data, s != nil, err)
		if err == nil {
			b, err := s.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			s2, err := ParseServe("f.yaml", b)
			if err != nil {
				t.Fatalf("parsing what Marshal wrote: %v\n%s", err, b)
			}
			if !reflect.DeepEqual(stripServe(s), stripServe(s2)) {
				t.Fatalf("Marshal and ParseServe changed the configuration:\n%s", b)
			}
		}
	})
}

func checkFuzzErrors(t *testing.T, data []byte, returned bool, err error) {
	if err == nil {
		return
	}
	if returned {
		t.Fatalf("a configuration returned with %v", err)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("%v (%T) is not Errors", err, err)
	}
	// YAML breaks lines at \n, \r\n, \r and (as yaml.v3 reads it) NEL, LS and PS.
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	lines := 1
	for _, br := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
		lines += strings.Count(text, br)
	}
	for _, e := range es {
		if e.File != "f.yaml" || e.Line < 0 || e.Line > lines {
			t.Fatalf("error outside the file (%d lines): %+v", lines, e)
		}
	}
}

// stripHost drops what Marshal does not write: the file name and line numbers.
func stripHost(h *Host) *Host {
	c := *h
	c.File = ""
	c.Sites = map[string]*Site{}
	for k, s := range h.Sites {
		s := *s
		s.line = 0
		c.Sites[k] = &s
	}
	c.Volumes = nil
	for _, v := range h.Volumes {
		v := *v
		v.line = 0
		c.Volumes = append(c.Volumes, &v)
	}
	return &c
}

func stripServe(s *Serve) *Serve {
	c := *s
	c.File = ""
	c.Volumes = nil
	for _, v := range s.Volumes {
		v := *v
		v.line = 0
		c.Volumes = append(c.Volumes, &v)
	}
	return &c
}

func TestMarshal_RoundTrip(t *testing.T) {
	h := mustParse(t, string(mustRead(t, "testdata/daemon/valid.yaml")))
	b, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if h2 := mustParse(t, string(b)); !reflect.DeepEqual(stripHost(h), stripHost(h2)) {
		t.Errorf("round trip changed the configuration:\n%s", b)
	}
	s, err := ParseServe("s.yaml", mustRead(t, "testdata/serve/valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err = s.Marshal(); err != nil {
		t.Fatal(err)
	}
	s2, err := ParseServe("s.yaml", b)
	if err != nil || !reflect.DeepEqual(stripServe(s), stripServe(s2)) {
		t.Errorf("round trip changed the configuration (%v):\n%s", err, b)
	}
}
