package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"drfs/config"
	"drfs/control"
	"drfs/internal/units"
	"drfs/replica"
)

type statusCommand struct {
	state, dir, file, socket string
	json                     bool
}

func (c *statusCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs status", flag.ContinueOnError)
	fs.StringVar(&c.state, "state", "", "state directory of one primary volume")
	fs.StringVar(&c.dir, "dir", "", "replica directory (as given to drfs serve)")
	fs.StringVar(&c.file, "config", "", "every volume of the drfs daemon of this configuration (default "+config.DefaultFile+")")
	fs.StringVar(&c.socket, "socket", "", "every volume of the drfs daemon answering on this socket")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	n := 0
	for _, s := range []string{c.state, c.dir, c.file, c.socket} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return errors.New("give either --state DIR (a primary volume), --dir DIR (a replica directory), --config FILE or --socket PATH (a host's daemon)")
	}
	return nil
}

func (c *statusCommand) Run(ctx context.Context) error {
	switch {
	case c.dir != "":
		return c.replica()
	case c.state == "":
		return c.host(ctx)
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

// host shows every volume of a drfs daemon in one table, and its links.
func (c *statusCommand) host(ctx context.Context) error {
	file := c.file
	if file == "" && c.socket == "" {
		file = config.DefaultFile
	}
	sock := c.socket
	if sock == "" {
		var err error
		if sock, err = hostSocket(file); err != nil {
			return err
		}
	}
	st, err := control.NewHostClient(sock).Status(ctx)
	if errors.Is(err, control.ErrNotRunning) && file != "" {
		if _, serr := os.Stat(file); errors.Is(serr, os.ErrNotExist) && c.file == "" {
			return fmt.Errorf("no drfs daemon answers on %s and there is no %s: for a volume of drfs mount, give --state DIR", sock, file)
		}
		if st, err = configuredStatus(ctx, file); err == nil {
			fmt.Fprintf(os.Stderr, "drfs: no drfs daemon answers on %s: the volumes of %s as their state directories hold them\n", sock, file)
		}
	}
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(st)
	}
	printHost(os.Stdout, st, time.Now())
	return nil
}

// configuredStatus is the status of the volumes of configuration file read from their state
// directories (or their own drfs mount), when no daemon runs them.
func configuredStatus(ctx context.Context, file string) (control.HostStatus, error) {
	cfg, err := readHostConfig(file)
	if err != nil {
		return control.HostStatus{}, err
	}
	st := control.HostStatus{Config: file, Volumes: []control.HostVolume{}}
	for _, v := range cfg.Volumes {
		hv := control.HostVolume{Name: v.Name, State: "not running", Source: v.Source, StateDir: v.State,
			Mountpoint: v.Mountpoint, Site: v.Replica, Tier: v.Tier}
		if v.Replica != "" {
			hv.Schedule = v.Schedule.String()
		}
		if vs, err := control.ReadStatus(ctx, v.State); err != nil {
			hv.Error = err.Error()
		} else {
			hv.Status = &vs
			if vs.Volume.Mounted {
				hv.State = "mounted by another drfs"
			}
		}
		st.Volumes = append(st.Volumes, hv)
	}
	return st, nil
}

// printHost writes the one-table view of a host.
func printHost(w io.Writer, st control.HostStatus, now time.Time) {
	if !st.Started.IsZero() {
		fmt.Fprintf(w, "drfs daemon: %s, up %s, %d volumes\n\n", st.Config, now.Sub(st.Started).Round(time.Second), len(st.Volumes))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tSTATE\tSITE\tTIER\tTARGET\tLAG\tDEADLINE\tSHARE\tACKED/JOURNAL\tNOTE")
	dur := func(sec float64) string {
		return (time.Duration(sec * float64(time.Second))).Round(100 * time.Millisecond).String()
	}
	var notes []string
	for _, v := range st.Volumes {
		state, site, tier, target, lag, deadline, share, seqs, note := v.State, "-", "-", "-", "-", "-", "-", "-", ""
		if v.Site != "" {
			site, tier, target = v.Site, strconv.Itoa(v.Tier), strings.TrimPrefix(v.Schedule, "rpo ")
		}
		if vs := v.Status; vs != nil {
			seqs = fmt.Sprintf("%d/%d", vs.Volume.AckedSeq, vs.Volume.JournalSeq)
			if rs := vs.Replication; rs != nil {
				state += ", " + string(rs.State)
				lag = dur(rs.LagSeconds)
				seqs = fmt.Sprintf("%d/%d", rs.AckedSeq, vs.Volume.JournalSeq)
				if ls := rs.Link; ls != nil {
					if ls.HasDeadline {
						if ls.DeadlineInSeconds >= 0 {
							deadline = "in " + dur(ls.DeadlineInSeconds)
						} else {
							deadline = dur(-ls.DeadlineInSeconds) + " ago"
						}
					}
					share = fmt.Sprintf("%.0f%% %s/s", 100*ls.ShareRatio, units.Bytes(int64(ls.ShareBytesPerSecond)))
					if ls.AtRisk {
						note = fmt.Sprintf("AT RISK: lag passes %s in %s (lag %s then; gets %s/s, writes %s/s)", target,
							dur(ls.MissInSeconds), dur(ls.PredictedLagSeconds), units.Bytes(int64(ls.PlannedBytesPerSecond)),
							units.Bytes(int64(ls.WriteBytesPerSecond)))
					}
				}
				if rs.RPOViolations > 0 {
					note = strings.TrimSpace(fmt.Sprintf("%d violations; %s", rs.RPOViolations, note))
				}
				if rs.LastError != "" && rs.State != "replicating" {
					notes = append(notes, fmt.Sprintf("%s: %s", v.Name, rs.LastError))
				}
			}
		}
		if v.Error != "" && v.State != control.VolumeRunning {
			retry := ""
			if !v.NextStart.IsZero() {
				retry = fmt.Sprintf(", tried again in %s", v.NextStart.Sub(now).Round(time.Second))
			}
			note = fmt.Sprintf("%d failures%s", v.Restarts, retry)
			notes = append(notes, fmt.Sprintf("%s: %s", v.Name, v.Error))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, state, site, tier, target, lag, deadline, share, seqs, note)
	}
	tw.Flush()
	if len(st.Links) > 0 {
		fmt.Fprintln(w)
	}
	for _, l := range st.Links {
		how := "measured"
		if l.MeasuredBytesPerSecond == 0 {
			how = "not measured yet"
		}
		budget := "no budget"
		if l.BudgetBytesPerSecond > 0 {
			budget = "budget " + units.Bytes(l.BudgetBytesPerSecond) + "/s"
		}
		fmt.Fprintf(w, "link to %s: %s/s (%s, %s), busy %.0f%% of the last 30s\n", l.Site,
			units.Bytes(int64(l.CapacityBytesPerSecond)), how, budget, 100*l.BusyRatio)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
}
