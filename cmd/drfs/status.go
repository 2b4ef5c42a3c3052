package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"drfs/control"
	"drfs/internal/units"
	"drfs/replica"
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
	st, err := control.ReadStatus(ctx, c.state)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(st)
	}
	vs, rs := st.Volume, st.Replication
	if rs != nil {
		// The replication's view of the shared fields is the newer one.
		vs.Generation, vs.AckedSeq, vs.Replica = rs.Generation, rs.AckedSeq, rs.Replica
		if rs.LastError != "" {
			vs.LastError = rs.LastError
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("volume", fmt.Sprintf("%v (%v)", vs.Volume, vs.VolumeID))
	row("role", fmt.Sprintf("%v, generation %d", vs.Role, vs.Generation))
	if vs.Mounted {
		row("mounted", fmt.Sprintf("yes, on %v", vs.Mountpoint))
	} else {
		row("mounted", "no")
	}
	row("source", vs.Source)
	row("journal", fmt.Sprintf("seq %d..%d, %s, durable to %d", vs.JournalFirstSeq, vs.JournalSeq, units.Bytes(vs.JournalBytes), vs.DurableSeq))
	row("checkpoint", fmt.Sprintf("seq %d", vs.CheckpointSeq))
	if vs.Clean {
		row("last stop", "clean")
	} else {
		row("last stop", "NOT clean (journal replayed at mount, hot regions marked for resync)")
	}
	switch {
	case rs == nil && vs.Replica != "":
		row("replica", fmt.Sprintf("%v (not shipping: the volume is not mounted; acked seq %d)", vs.Replica, vs.AckedSeq))
	case rs != nil:
		row("replica", fmt.Sprintf("%v (%v)", rs.Replica, rs.Schedule))
		row("replication", fmt.Sprintf("%v, acked seq %d, lag %.3fs, %s pending", rs.State, rs.AckedSeq, rs.LagSeconds, units.Bytes(rs.PendingBytes)))
		if t := rs.RPOTargetSeconds; t > 0 {
			row("rpo", fmt.Sprintf("target %gs, %d violations", t, rs.RPOViolations))
		}
		if tot := rs.SyncTotalBytes; tot > 0 && rs.SyncDoneBytes < tot {
			row("sync", fmt.Sprintf("%s of %s compared", units.Bytes(rs.SyncDoneBytes), units.Bytes(tot)))
		}
	default:
		row("replica", "none (mount with --replica to replicate)")
	}
	row("resync", fmt.Sprintf("%d extents pending", len(vs.Resync)))
	if vs.LastError != "" {
		row("last error", vs.LastError)
	}
	tw.Flush()
	for i, e := range vs.Resync {
		if i == 10 {
			fmt.Printf("  ... and %d more (see --json)\n", len(vs.Resync)-10)
			break
		}
		what := "whole"
		if e.Len >= 0 {
			what = fmt.Sprintf("%s at %s", units.Bytes(e.Len), units.Bytes(e.Off))
		}
		fmt.Printf("  %v: %s (%v)\n", e.Path, what, e.Reason)
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *statusCommand) replica() error {
	out, err := replica.DirStatus(c.dir, time.Now())
	if err != nil {
		return err
	}
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
