package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"drfs/control"
	"drfs/internal/audit"
	"drfs/internal/units"
	"drfs/replica"
	"drfs/shipper"
	"drfs/volume"
	"drfs/wire"
)

// promoteCommand: drfs promote --dir DIR --volume V [--point SEQ|--time T] [--force] [--state-out DIR]
type promoteCommand struct {
	dir, volume, stateOut, point, at string
	force                            bool
}

func (c *promoteCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs promote", flag.ContinueOnError)
	fs.StringVar(&c.dir, "dir", "", "replica directory (required)")
	fs.StringVar(&c.volume, "volume", "", "volume name (required)")
	fs.StringVar(&c.point, "point", "", "roll back to this recovery point (a seq from drfs points) instead of the latest")
	fs.StringVar(&c.at, "time", "", "roll back to the newest recovery point at or before this time (RFC 3339)")
	fs.BoolVar(&c.force, "force", false, "promote although the old primary may still be in contact (it is fenced when it returns)")
	fs.StringVar(&c.stateOut, "state-out", "", "state directory to prepare for the new primary (default DIR/VOLUME/primary)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if c.dir == "" || c.volume == "" {
		return errors.New("--dir and --volume are required")
	}
	if c.point != "" && c.at != "" {
		return errors.New("use either --point or --time")
	}
	return nil
}

func (c *promoteCommand) Run(ctx context.Context) error {
	o := wire.PromoteOptions{Force: c.force, StateDir: c.stateOut}
	if c.point != "" {
		p, err := strconv.ParseUint(c.point, 10, 64)
		if err != nil {
			return fmt.Errorf("--point %q is not a seq", c.point)
		}
		o.Point = &p
	}
	if c.at != "" {
		t, err := time.Parse(time.RFC3339, c.at)
		if err != nil {
			return fmt.Errorf("--time %q: want RFC 3339, e.g. 2026-11-21T10:00:00Z", c.at)
		}
		o.Time = &t
	}
	op := replica.Operator{Layout: replica.Layout{Dir: c.dir, Volume: c.volume}, PreparePrimary: volume.Prepare}
	res, err := op.Promote(ctx, o)
	if errors.Is(err, replica.ErrHandOverPending) {
		// The primary is alive: it was asked to hand over; wait for it.
		fmt.Println("the primary is alive: asked it to ship its last log and hand over (zero loss); waiting...")
		return c.waitHandOver(ctx, op)
	}
	if err != nil {
		return err
	}
	fmt.Printf(`promoted volume %s to generation %d at seq %d (%d newer logs rolled back)
bring it up as the primary on this site:
  drfs mount --source %s --state %s MOUNTPOINT [--replica URL-of-a-new-replica]
the old primary is fenced: if it comes back it is refused, keeps serving its guests read-write
but stops shipping; make it a replica of this one with drfs reverse.
`, res.Volume, res.Generation, res.Seq, res.RolledBack, res.Source, res.State)
	return nil
}

// waitHandOver waits until the primary completed the hand-over the replica asked for.
func (c *promoteCommand) waitHandOver(ctx context.Context, op replica.Operator) error {
	res, err := op.WaitHandOver(ctx, shipper.HandOverPause+30*time.Second)
	var refused *replica.HandOverRefusedError
	switch {
	case errors.As(err, &refused):
		return fmt.Errorf("the primary's hand-over %s did not happen: %s; nothing changed, the primary stays the primary (retry drfs promote, or use --force if it is lost)", refused.ID, refused.Reason)
	case errors.Is(err, replica.ErrHandOverTimeout):
		return errors.New("the primary did not hand over in time: if it is lost, run drfs promote --force (it will be fenced if it comes back)")
	case err != nil:
		return err
	}
	fmt.Printf(`the primary handed over: volume %s is generation %d from seq %d (zero loss)
bring it up as the primary on this site:
  drfs mount --source %s --state %s MOUNTPOINT
`, res.Volume, res.Generation, res.Seq, res.Source, res.State)
	return nil
}

// failoverCommand: drfs failover --planned --state DIR | --resolve [--force-resume] --state DIR
type failoverCommand struct {
	state                      string
	planned, resolve, forceRes bool
	timeout                    time.Duration
}

func (c *failoverCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs failover", flag.ContinueOnError)
	fs.StringVar(&c.state, "state", "", "state directory of the mounted, replicating primary (required)")
	fs.BoolVar(&c.planned, "planned", false, "zero-loss switch: pause guest writes, ship the last log, promote the replica, demote this side")
	fs.BoolVar(&c.resolve, "resolve", false, "end a planned failover left in doubt: ask the replica whether it promoted; demote this side if it did, take writes again if it did not")
	fs.BoolVar(&c.forceRes, "force-resume", false, "with --resolve: take writes again WITHOUT the replica's answer (only when the replica site is known lost and never promoted)")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "bound on the guests' pause: give up (changing nothing) if the replica has not caught up and promoted by then")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if c.state == "" || c.planned == c.resolve || (c.forceRes && !c.resolve) {
		return errors.New("usage: drfs failover --planned --state DIR, or drfs failover --resolve [--force-resume] --state DIR (for an unplanned failover run drfs promote on the replica site)")
	}
	return nil
}

func (c *failoverCommand) Run(ctx context.Context) error {
	if c.resolve {
		return c.runResolve(ctx)
	}
	r, err := control.NewClient(c.state).Failover(ctx, c.timeout)
	if err != nil {
		return err
	}
	fmt.Printf(`planned failover done: guests were paused for %s
the replica is now the primary of generation %d from seq %d; on the replica site run:
  drfs mount --source %s --state %s MOUNTPOINT
this side is demoted: its mount is read-only now. Stop the VMs here, unmount, then make this
site the new primary's replica (no copy needed):
  drfs reverse --state %s --dir REPLICA-DIR && drfs serve --dir REPLICA-DIR ...
`, r.Pause.Round(time.Microsecond), r.Generation, r.Seq, r.NewSource, r.NewState, c.state)
	return nil
}

func (c *failoverCommand) runResolve(ctx context.Context) error {
	r, err := control.NewClient(c.state).Resolve(ctx, c.forceRes)
	if err != nil {
		return err
	}
	switch r.Outcome {
	case "aborted":
		fmt.Printf("failover %s did not happen (%s): this side is the primary and takes writes again\n", r.Key, r.Detail)
	case "demoted":
		fmt.Printf("failover %s happened: %s\nthis side is demoted and read-only: stop the VMs here and run drfs reverse (see drfs failover --planned)\n", r.Key, r.Detail)
	default:
		fmt.Println(r.Detail)
	}
	return nil
}

// reverseCommand: drfs reverse --state DIR --dir REPLICA-DIR
type reverseCommand struct{ state, dir string }

func (c *reverseCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs reverse", flag.ContinueOnError)
	fs.StringVar(&c.state, "state", "", "state directory of the old primary (not mounted) (required)")
	fs.StringVar(&c.dir, "dir", "", "replica directory to serve from this site (required); the source moves to DIR/VOLUME/data")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if c.state == "" || c.dir == "" {
		return errors.New("--state and --dir are required")
	}
	return nil
}

func (c *reverseCommand) Run(ctx context.Context) error {
	if control.Running(ctx, c.state) {
		return errors.New("the volume is still mounted here: stop the VMs, stop drfs mount, then reverse")
	}
	// The primary side saves what the replica never acknowledged and demotes its state; the
	// replica side adopts the source as the volume's data.
	st, err := volume.ReadStatus(c.state)
	if err != nil {
		return err
	}
	d, err := volume.Diverge(c.state, replica.Layout{Dir: c.dir, Volume: st.Volume}.Diverged(), "reversed into a replica of the new primary")
	if err != nil {
		return err
	}
	data, err := replica.Adopt(c.dir, replica.Adoption{ID: d.ID, Name: d.Name, Source: d.Source, Generation: d.Generation,
		History: d.History, Acked: d.Acked, Extents: d.Extents}, commandLogger())
	if err != nil {
		return err
	}
	fmt.Printf("volume %s is now a replica at seq %d (generation %d), data in %s\n", d.Name, d.Acked, d.Generation, data)
	if d.LogFile != "" {
		fmt.Printf("this side had %d records after seq %d that never reached the replica (split brain if the new primary\nwrote too): saved to %s (%s); the new primary overwrites them\n", d.Last-d.Acked, d.Acked, d.LogFile, units.Bytes(d.LogBytes))
	}
	fmt.Printf("%d extents will be compared by block hash when the new primary connects; start the replica:\n  drfs serve --dir %s ...\n", len(d.Extents), c.dir)
	return nil
}

// auditCommand: drfs audit (--state DIR | --dir DIR --volume V)
type auditCommand struct {
	state, dir, volume string
	json               bool
}

func (c *auditCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs audit", flag.ContinueOnError)
	fs.StringVar(&c.state, "state", "", "state directory of a primary")
	fs.StringVar(&c.dir, "dir", "", "replica directory")
	fs.StringVar(&c.volume, "volume", "", "volume name (with --dir)")
	fs.BoolVar(&c.json, "json", false, "print JSON lines")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if (c.state == "") == (c.dir == "") || (c.dir != "" && c.volume == "") {
		return errors.New("give --state DIR, or --dir DIR --volume NAME")
	}
	return nil
}

func (c *auditCommand) Run(ctx context.Context) error {
	path := filepath.Join(c.state, audit.FileName)
	if c.dir != "" {
		path = replica.Layout{Dir: c.dir, Volume: c.volume}.Audit()
	}
	entries, err := audit.Read(path)
	if err != nil {
		return err
	}
	if c.json {
		enc := json.NewEncoder(os.Stdout)
		for _, e := range entries {
			enc.Encode(e)
		}
		return nil
	}
	if len(entries) == 0 {
		fmt.Println("no failover actions recorded")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTION\tHOST\tUSER\tGENERATION\tPOINT\tFORCED\tDETAIL")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d -> %d\t%d\t%v\t%s\n", e.Time.Local().Format(time.RFC3339), e.Action, e.Host, e.User, e.GenBefore, e.GenAfter, e.Point, e.Forced, e.Detail)
	}
	return tw.Flush()
}
