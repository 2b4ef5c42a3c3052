package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"drfs/internal/units"
	"drfs/replica"
	"drfs/volume"
)

type statusCommand struct {
	state, dir string
	json       bool
}

func (c *statusCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs status", flag.ContinueOnError)
	fs.StringVar(&c.state, "state", "", "state directory of a primary volume")
	fs.StringVar(&c.dir, "dir", "", "replica directory (as given to drfs serve)")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if (c.state == "") == (c.dir == "") {
		return errors.New("give either --state DIR (primary) or --dir DIR (replica)")
	}
	return nil
}

func (c *statusCommand) Run(ctx context.Context) error {
	if c.dir != "" {
		return c.replica()
	}
	st, err := c.fetch()
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(st)
	}
	get := func(k string) any { return st[k] }
	num := func(k string) float64 { f, _ := st[k].(float64); return f }
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("volume", fmt.Sprintf("%v (%v)", get("volume"), get("volume_id")))
	row("role", fmt.Sprintf("%v, generation %.0f", get("role"), num("generation")))
	if m, _ := st["mounted"].(bool); m {
		row("mounted", fmt.Sprintf("yes, on %v", get("mountpoint")))
	} else {
		row("mounted", "no")
	}
	row("source", get("source"))
	row("journal", fmt.Sprintf("seq %.0f..%.0f, %s, durable to %.0f", num("journal_first_seq"), num("journal_seq"), units.Bytes(int64(num("journal_bytes"))), num("durable_seq")))
	row("checkpoint", fmt.Sprintf("seq %.0f", num("checkpoint_seq")))
	if clean, _ := st["clean"].(bool); clean {
		row("last stop", "clean")
	} else {
		row("last stop", "NOT clean (journal replayed at mount, hot regions marked for resync)")
	}
	if r, ok := st["replica"]; ok && st["schedule"] == nil {
		row("replica", fmt.Sprintf("%v (not shipping: the volume is not mounted; acked seq %.0f)", r, num("acked_seq")))
	} else if ok {
		row("replica", fmt.Sprintf("%v (%v)", r, get("schedule")))
		row("replication", fmt.Sprintf("%v, acked seq %.0f, lag %.3fs, %s pending", get("replication_state"), num("acked_seq"), num("lag_seconds"), units.Bytes(int64(num("pending_bytes")))))
		if t := num("rpo_target_seconds"); t > 0 {
			row("rpo", fmt.Sprintf("target %gs, %.0f violations", t, num("rpo_violations")))
		}
		if tot := num("sync_total_bytes"); tot > 0 && num("sync_done_bytes") < tot {
			row("sync", fmt.Sprintf("%s of %s compared", units.Bytes(int64(num("sync_done_bytes"))), units.Bytes(int64(tot))))
		}
	} else {
		row("replica", "none (mount with --replica to replicate)")
	}
	resync, _ := st["resync"].([]any)
	row("resync", fmt.Sprintf("%d extents pending", len(resync)))
	if e, _ := st["last_error"].(string); e != "" {
		row("last error", e)
	}
	tw.Flush()
	for i, x := range resync {
		if i == 10 {
			fmt.Printf("  ... and %d more (see --json)\n", len(resync)-10)
			break
		}
		e, _ := x.(map[string]any)
		what := "whole"
		if l, _ := e["len"].(float64); l >= 0 {
			off, _ := e["off"].(float64)
			what = fmt.Sprintf("%s at %s", units.Bytes(int64(l)), units.Bytes(int64(off)))
		}
		fmt.Printf("  %v: %s (%v)\n", e["path"], what, e["reason"])
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fetch asks a running drfs over its control socket, or reads the state directory.
func (c *statusCommand) fetch() (map[string]any, error) {
	var st map[string]any
	resp, err := getStatus(c.state)
	if err == nil {
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return nil, fmt.Errorf("read status from the running drfs: %w", err)
		}
		return st, nil
	}
	vs, err := volume.ReadStatus(c.state)
	if errors.Is(err, volume.ErrLocked) {
		return nil, fmt.Errorf("drfs is running on %s but its control socket does not answer: %w", c.state, err)
	}
	if err != nil {
		return nil, err
	}
	return statusMap(vs, nil), nil
}

// replicaStatus is one volume of `drfs status --dir`.
type replicaStatus struct {
	Volume         string    `json:"volume"`
	VolumeID       string    `json:"volume_id"`
	Role           string    `json:"role"`
	Generation     uint64    `json:"generation"`
	AppliedSeq     uint64    `json:"applied_seq"`
	LagSeconds     float64   `json:"lag_seconds"` // age of the newest applied change log
	AppliedAt      time.Time `json:"applied_at"`
	Consistent     bool      `json:"consistent"`
	Points         int       `json:"recovery_points"`
	OldestPointSeq uint64    `json:"oldest_point_seq"`
	DataDir        string    `json:"data_dir"`
	PendingBytes   int64     `json:"pending_bytes"`
	LastError      string    `json:"last_error"`
}

func (c *statusCommand) replica() error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	var out []replicaStatus
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		st, err := replica.ReadState(c.dir, e.Name())
		if errors.Is(err, os.ErrNotExist) {
			continue // not a volume directory
		}
		if err != nil {
			return fmt.Errorf("volume %s: %w", e.Name(), err)
		}
		role := st.Role
		if role == "" {
			role = "replica"
		}
		rs := replicaStatus{Volume: e.Name(), VolumeID: st.VolumeID, Role: string(role), Generation: st.Generation,
			AppliedSeq: st.Applied, AppliedAt: st.AppliedAt, Consistent: st.Consistent, Points: len(st.Points),
			DataDir: filepath.Join(c.dir, e.Name(), "data"), LastError: st.LastError}
		if !st.AppliedCreated.IsZero() {
			rs.LagSeconds = time.Since(st.AppliedCreated).Seconds()
		}
		if len(st.Points) > 0 {
			rs.OldestPointSeq = st.Points[0].From - 1
		}
		out = append(out, rs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Volume < out[j].Volume })
	if c.json {
		return printJSON(out)
	}
	if len(out) == 0 {
		fmt.Printf("no volumes in %s yet\n", c.dir)
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tGEN\tAPPLIED SEQ\tCONSISTENT\tLAST LOG AGE\tPOINTS\tDATA")
	for _, r := range out {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t%s\t%d\t%s\n", r.Volume, r.Generation, r.AppliedSeq, r.Consistent,
			(time.Duration(r.LagSeconds * float64(time.Second))).Round(time.Second), r.Points, r.DataDir)
	}
	return tw.Flush()
}
