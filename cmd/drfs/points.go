package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"drfs/internal/units"
	"drfs/replica"
)

type pointsCommand struct {
	dir, volume string
	json        bool
}

func (c *pointsCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs points", flag.ContinueOnError)
	fs.StringVar(&c.dir, "dir", "", "replica directory (required)")
	fs.StringVar(&c.volume, "volume", "", "volume name (required)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if c.dir == "" || c.volume == "" {
		return errors.New("--dir and --volume are required")
	}
	return nil
}

// pointView is one recovery point as listed: the seq the volume can be rolled back to.
type pointView struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	UndoBytes int64     `json:"size"`
}

func (c *pointsCommand) Run(ctx context.Context) error {
	st, err := replica.ReadState(c.dir, c.volume)
	if err != nil {
		return err
	}
	// Each kept log's undo restores the state before it: the point at From-1, which is the
	// state the previous log produced (cut at that log's creation time). Resync logs share
	// the From of the log after them: one point, the state before the first (its undo size
	// is theirs together). The latest applied state is a point too, unless resync logs
	// applied since make the applied seq name the state before them.
	var out []pointView
	for i, p := range st.Points {
		if n := len(out); n > 0 && out[n-1].Seq == p.From-1 {
			out[n-1].UndoBytes += p.UndoBytes
			continue
		}
		pv := pointView{Seq: p.From - 1, UndoBytes: p.UndoBytes}
		if i > 0 {
			pv.Time = st.Points[i-1].Created
		}
		out = append(out, pv)
	}
	if n := len(out); st.Applied > 0 && (n == 0 || out[n-1].Seq != st.Applied) {
		out = append(out, pointView{Seq: st.Applied, Time: st.AppliedCreated})
	}
	if c.json {
		return printJSON(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tUNDO SIZE")
	for _, p := range out {
		t := "-"
		if !p.Time.IsZero() {
			t = p.Time.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", p.Seq, t, units.Bytes(p.UndoBytes))
	}
	return tw.Flush()
}
