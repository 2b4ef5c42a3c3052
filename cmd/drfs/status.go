package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"drfs/volume"
)

type statusCommand struct {
	state string
	json  bool
}

func (c *statusCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs status", flag.ContinueOnError)
	fs.StringVar(&c.state, "state", "", "state directory of the volume (required)")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if c.state == "" {
		return errors.New("--state is required")
	}
	return nil
}

func (c *statusCommand) Run(ctx context.Context) error {
	st, err := c.fetch()
	if err != nil {
		return err
	}
	if c.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("volume", fmt.Sprintf("%s (%s)", st.Volume, st.VolumeID))
	row("role", st.Role)
	if st.Mounted {
		row("mounted", "yes, on "+st.Mountpoint)
	} else {
		row("mounted", "no")
	}
	row("source", st.Source)
	row("journal", fmt.Sprintf("seq %d..%d, %s, durable to %d", st.JournalFirstSeq, st.JournalSeq, human(st.JournalBytes), st.DurableSeq))
	row("checkpoint", fmt.Sprintf("seq %d", st.CheckpointSeq))
	if st.Clean {
		row("last stop", "clean")
	} else {
		row("last stop", "NOT clean (journal replayed / will be replayed at mount)")
	}
	row("resync", fmt.Sprintf("%d extents pending", len(st.Resync)))
	if st.LastError != "" {
		row("last error", st.LastError)
	}
	tw.Flush()
	for i, e := range st.Resync {
		if i == 10 {
			fmt.Printf("  ... and %d more (see --json)\n", len(st.Resync)-10)
			break
		}
		what := "whole file"
		if e.Len >= 0 {
			what = fmt.Sprintf("%s at %s", human(e.Len), human(e.Off))
		}
		fmt.Printf("  %s: %s (%s)\n", e.Path, what, e.Reason)
	}
	return nil
}

// fetch asks a running drfs over its control socket, or reads the state directory.
func (c *statusCommand) fetch() (volume.Status, error) {
	var st volume.Status
	resp, err := controlClient(c.state).Get("http://drfs/status")
	if err == nil {
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return st, fmt.Errorf("read status from the running drfs: %w", err)
		}
		return st, nil
	}
	st, err = volume.ReadStatus(c.state)
	if errors.Is(err, volume.ErrLocked) && strings.Contains(err.Error(), "running") {
		return st, fmt.Errorf("drfs is running on %s but its control socket does not answer: %w", c.state, err)
	}
	return st, err
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
