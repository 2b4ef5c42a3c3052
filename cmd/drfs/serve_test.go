package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"drfs/changelog"
	"drfs/config"
	"drfs/replica"
)

// writeServeFile writes a replica configuration serving dir on a loopback address.
func writeServeFile(t *testing.T, path, dir, rest string) {
	t.Helper()
	text := "dir: " + dir + "\nlisten: 127.0.0.1:9740\ninsecure: true\nkeep-points: 3\n" + rest
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestServeCommand_ParseFlags: --config is the whole configuration; flags go through the
// same checks; a file's problems are all listed, naming file and line.
func TestServeCommand_ParseFlags(t *testing.T) {
	d := t.TempDir()
	good, bad := filepath.Join(d, "serve.yaml"), filepath.Join(d, "bad.yaml")
	writeServeFile(t, good, "/srv/replica", "volumes:\n  - {name: erp, allow: insecure, keep-for: 168h}\n")
	writeServeFile(t, bad, "srv/replica", "keep-for: forever\n")
	for _, c := range []struct {
		args string
		bad  []string // substrings of the error; none: must parse
	}{
		{"--config " + good, nil},
		{"--config " + good + " --log-format json", nil},
		{"--config " + good + " --check", nil},
		{"--config " + good + " --dir /x --keep-points 5", []string{"--config " + good + " is the whole configuration: put --dir, --keep-points in the file"}},
		{"--config " + bad, []string{"2 problems in the configuration, nothing was started:\n",
			bad + `:1: dir: "srv/replica": want an absolute path`,
			bad + `:5: keep-for: "forever": want a duration such as 24h or 168h (0 for none)`}},
		{"--config " + filepath.Join(d, "missing.yaml"), []string{"no such file"}},
		{"--dir d", []string{"--listen: required", "--certs: required"}},
		{"--dir d --listen 127.0.0.1:0 --insecure --keep-points 0", []string{`--keep-points: "0": want a whole number`}},
	} {
		cmd := &serveCommand{}
		err := cmd.ParseFlags(strings.Fields(c.args))
		if len(c.bad) == 0 {
			if err != nil {
				t.Errorf("%q: %v", c.args, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%q: accepted", c.args)
			continue
		}
		for _, want := range c.bad {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q: error\n%v\ndoes not contain %q", c.args, err, want)
			}
		}
	}
	cmd := &serveCommand{}
	if err := cmd.ParseFlags([]string{"--config", good, "--log-format", "json"}); err != nil {
		t.Fatal(err)
	}
	if cmd.cfg.Log.Format != "json" || cmd.cfg.File != good {
		t.Errorf("--log-format with --config: %+v", cmd.cfg)
	}
	if n, d := cmd.cfg.Retention("erp"); n != 3 || d != 168*time.Hour {
		t.Errorf("retention of erp: %d, %s", n, d)
	}
}

// TestServeReloader_Reload: a reload changes the retention and bindings of open volumes,
// keeps the running value of settings that need a restart (and says so), and refuses a file
// with any problem whole, logging each one.
func TestServeReloader_Reload(t *testing.T) {
	d := t.TempDir()
	dir, file := filepath.Join(d, "replica"), filepath.Join(d, "serve.yaml")
	writeServeFile(t, file, dir, "volumes:\n  - {name: erp, allow: hq, keep-for: 168h}\n")
	cfg, err := readServeConfig(file, "")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := newLogger(&logs, "text")
	srv, err := replica.NewServer(cfg.Dir, replica.Options{KeepPoints: cfg.KeepPoints, KeepFor: cfg.KeepFor, Retention: cfg.Retention, Logger: logger}, changelog.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rl := &serveReloader{file: file, cur: cfg, srv: srv, log: logger, m: newServeMetrics()}
	erp, err := srv.Volume("erp")
	if err != nil {
		t.Fatal(err)
	}
	other, err := srv.Volume("other")
	if err != nil {
		t.Fatal(err)
	}
	retention := func(v *replica.Volume, n int, d time.Duration) {
		t.Helper()
		if gn, gd := v.Retention(); gn != n || gd != d {
			t.Errorf("%s: retention %d, %s; want %d, %s", v.Name(), gn, gd, n, d)
		}
	}
	retention(erp, 3, 168*time.Hour)
	retention(other, 3, 0)

	// Narrow erp, widen the default, move erp to another site, change the port.
	text := "dir: " + dir + "\nlisten: 127.0.0.1:9741\ninsecure: true\nkeep-points: 5\nkeep-for: 1h\n" +
		"volumes:\n  - {name: erp, allow: dr, keep-points: 2, keep-for: 0s}\n"
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rl.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, logs.String())
	}
	retention(erp, 2, 0)
	retention(other, 5, time.Hour)
	if rl.cur.Listen != "127.0.0.1:9740" || rl.cur.Allow()["erp"] != "dr" || rl.cur.KeepPoints != 5 {
		t.Errorf("configuration in force: listen %s, allow %v, keep-points %d", rl.cur.Listen, rl.cur.Allow(), rl.cur.KeepPoints)
	}
	for _, want := range []string{"take effect when drfs serve restarts", "settings=listen", "reload applied", `volumes_changed="erp (allow,keep-points,keep-for)"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, logs.String())
		}
	}

	// A broken file changes nothing, and every problem is logged.
	logs.Reset()
	writeServeFile(t, file, dir, "keep-for: forever\nvolumes:\n  - {name: erp, keep-points: 0}\n")
	if _, err := rl.reload(); err == nil {
		t.Fatal("a broken file was applied")
	}
	retention(erp, 2, 0)
	retention(other, 5, time.Hour)
	for _, want := range []string{"reload refused: the running configuration stays", "problems=2",
		file + `:5: keep-for: "forever"`, file + `:7: volumes[0].keep-points: "0"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, logs.String())
		}
	}

	// Configured by flags: nothing to reload, nothing changes.
	flags, err := config.FromServeFlags(config.ServeFlags{Dir: dir, Listen: "127.0.0.1:1", Insecure: true, KeepPoints: 7, MaxConcurrentLogs: 4})
	if err != nil {
		t.Fatal(err)
	}
	rl = &serveReloader{cur: flags, srv: srv, log: logger, m: newServeMetrics()}
	if _, err := rl.reload(); err == nil || !strings.Contains(err.Error(), "no file to reload") {
		t.Errorf("reload without a file: %v", err)
	}
	retention(erp, 2, 0)
}

// TestServeReloader_Socket: drfs serve --reload asks through the local socket and hears the
// outcome: nil when applied, every problem when refused; systemd is told RELOADING=1 then
// READY=1 either way.
func TestServeReloader_Socket(t *testing.T) {
	d := t.TempDir()
	dir, file := filepath.Join(d, "replica"), filepath.Join(d, "serve.yaml")
	writeServeFile(t, file, dir, "")
	cfg, err := readServeConfig(file, "")
	if err != nil {
		t.Fatal(err)
	}
	logger := newLogger(io.Discard, "text")
	srv, err := replica.NewServer(cfg.Dir, replica.Options{KeepPoints: cfg.KeepPoints, Retention: cfg.Retention, Logger: logger}, changelog.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var notes []string
	rl := &serveReloader{file: file, cur: cfg, srv: srv, log: logger, m: newServeMetrics(), status: "serving",
		notify: func(s string) { notes = append(notes, strings.Split(s, "\n")[0]) }}
	ln, err := net.Listen("unix", replica.Layout{Dir: dir}.Socket())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/reload", rl)
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	defer hs.Close()

	writeServeFile(t, file, dir, "volumes:\n  - {name: erp, keep-for: 168h}\n")
	var out bytes.Buffer
	if err := askReload(context.Background(), dir, &out); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if out.String() != "changed    erp (keep-for)\n" {
		t.Errorf("drfs serve --reload printed %q", out.String())
	}
	if n, d := rl.cur.Retention("erp"); n != 3 || d != 168*time.Hour {
		t.Errorf("after the reload erp has %d, %s", n, d)
	}
	writeServeFile(t, file, dir, "keep-for: forever\n")
	err = askReload(context.Background(), dir, io.Discard)
	if err == nil || !strings.Contains(err.Error(), file+`:5: keep-for: "forever"`) {
		t.Errorf("a refused reload: %v", err)
	}
	if want := []string{"RELOADING=1", "READY=1", "RELOADING=1", "READY=1"}; !reflect.DeepEqual(notes, want) {
		t.Errorf("notifications %q, want %q", notes, want)
	}
	if err := askReload(context.Background(), filepath.Join(d, "elsewhere"), io.Discard); err == nil || !strings.Contains(err.Error(), "no drfs serve answers") {
		t.Errorf("no server: %v", err)
	}
}
