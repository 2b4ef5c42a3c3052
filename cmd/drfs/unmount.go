package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"drfs/internal/audit"
	"drfs/seed"
	"drfs/shipper"
	"drfs/volume"
)

// controlSocket is the name, inside the state directory, of the unix socket on which a running
// drfs answers local commands such as status.
const controlSocket = "drfs.sock"

// statusMap merges the volume's and the shipper's status into the flat object `drfs status
// --json` prints.
func statusMap(vs volume.Status, ss *shipper.Status) map[string]any {
	m := map[string]any{}
	merge := func(v any) {
		b, _ := json.Marshal(v)
		var part map[string]any
		json.Unmarshal(b, &part)
		for k, x := range part {
			if k == "last_error" && x == "" && m[k] != nil && m[k] != "" {
				continue
			}
			m[k] = x
		}
	}
	merge(vs)
	if ss != nil {
		merge(ss)
	}
	return m
}

func serveControl(vol *volume.Volume, ship *shipper.Shipper, mnt string, logger *log.Logger) (*http.Server, error) {
	path := filepath.Join(vol.StateDir(), controlSocket)
	os.Remove(path) // a leftover of an unclean stop; the state lock is ours
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		vs := vol.Status()
		vs.Mountpoint = mnt
		var ss *shipper.Status
		if ship != nil {
			st := ship.Status()
			ss = &st
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(statusMap(vs, ss))
	})
	mux.HandleFunc("POST /failover", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if ship == nil {
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(map[string]string{"error": "this volume has no replica to fail over to (mount with --replica)"})
			return
		}
		timeout, _ := time.ParseDuration(r.URL.Query().Get("timeout"))
		if timeout <= 0 {
			timeout = 2 * time.Minute
		}
		// The failover runs to its end even if the client goes away: stopping it halfway would
		// only leave it in doubt.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), timeout)
		defer cancel()
		res, err := ship.PlannedFailover(ctx, r.URL.Query().Get("key"))
		if err != nil {
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "pause_ns": res.Pause, "in_doubt": errors.Is(err, shipper.ErrInDoubt)})
			return
		}
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("POST /failover-resolve", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if ship == nil {
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(map[string]string{"error": "this volume has no replica (mount with --replica)"})
			return
		}
		var res shipper.ResolveResult
		var err error
		if r.URL.Query().Get("force") == "1" {
			res, err = ship.ForceResume()
		} else {
			ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
			defer cancel()
			res, err = ship.Resolve(ctx)
		}
		if err != nil {
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("POST /verify", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if ship == nil {
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(map[string]string{"error": "this volume has no replica to verify against (mount with --replica)"})
			return
		}
		res, err := ship.Verify(r.Context())
		if err != nil {
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("POST /seed-export", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		m, err := seed.Export(vol, r.URL.Query().Get("dir"))
		if err != nil {
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		vol.Audit(audit.Entry{Action: "seed-export", GenBefore: m.Generation, GenAfter: m.Generation, Point: m.Seq, Detail: "to " + r.URL.Query().Get("dir")})
		json.NewEncoder(w).Encode(map[string]any{"seq": m.Seq, "files": len(m.Files)})
	})
	mux.HandleFunc("POST /sync", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if ship == nil {
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(map[string]string{"error": "this volume has no replica (mount with --replica)"})
			return
		}
		timeout, _ := time.ParseDuration(r.URL.Query().Get("timeout"))
		if timeout <= 0 {
			timeout = 10 * time.Minute
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		seq, err := ship.SyncNow(ctx)
		if err != nil {
			w.WriteHeader(http.StatusGatewayTimeout)
			json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "acked_seq": seq})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"acked_seq": seq})
	})
	srv, err := serveHTTP("unix", path, mux, logger)
	if err != nil {
		return nil, err
	}
	os.Chmod(path, 0o600)
	return srv, nil
}

// controlClient returns an HTTP client that talks to the control socket of the drfs using state.
func controlClient(state string) *http.Client {
	path := filepath.Join(state, controlSocket)
	return &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}
}

// remountReadOnly makes the kernel refuse writes to mnt before they reach drfs (a demoted
// volume refuses them anyway, with EROFS).
func remountReadOnly(mnt string, logger *log.Logger) {
	mnt, _ = filepath.Abs(mnt)
	if err := unix.Mount(mnt, mnt, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		logger.Printf("remount %s read-only: %v (writes still fail with EROFS in drfs)", mnt, err)
	}
}

func lazyUnmount(mnt string) error { return unix.Unmount(mnt, unix.MNT_DETACH) }

// serveSocket is the name, inside a replica directory, of the unix socket on which a running
// drfs serve answers local operator commands (promote).
const serveSocket = "drfs-serve.sock"

// serveClient returns an HTTP client for the local socket of the drfs serve using dir.
func serveClient(dir string) *http.Client {
	path := filepath.Join(dir, serveSocket)
	return &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// callControl POSTs to the control socket of the drfs using state and decodes its JSON reply
// into out; a reply carrying "error" becomes the returned error.
func callControl(state, path string, out any) error {
	resp, err := controlClient(state).Post("http://drfs"+path, "", nil)
	if err != nil {
		return fmt.Errorf("is drfs mounted with --state %s? %w", state, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	return json.Unmarshal(b, out)
}

// getStatus asks the drfs using state for its status, giving up after a few seconds so a
// wedged daemon cannot hang the caller.
func getStatus(state string) (*http.Response, error) {
	c := controlClient(state)
	c.Timeout = 10 * time.Second
	return c.Get("http://drfs/status")
}
