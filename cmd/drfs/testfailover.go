package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"

	"drfs/config"
	"drfs/replica"
	"drfs/volume"
)

// testFailoverCommand: drfs test-failover --dir DIR --volume V --point SEQ --mount MNT | --cleanup
type testFailoverCommand struct {
	dir, volume, point, mount string
	cleanup                   bool
}

func (c *testFailoverCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs test-failover", flag.ContinueOnError)
	fs.StringVar(&c.dir, "dir", "", "replica directory (required)")
	fs.StringVar(&c.volume, "volume", "", "volume name (required)")
	fs.StringVar(&c.point, "point", "", "recovery point to clone (default: the latest applied seq)")
	fs.StringVar(&c.mount, "mount", "", "mount the writable clone here (runs in the foreground like drfs mount)")
	fs.BoolVar(&c.cleanup, "cleanup", false, "remove the clone of a finished test failover")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if c.dir == "" || c.volume == "" || (c.mount == "") == !c.cleanup {
		return errors.New("usage: drfs test-failover --dir DIR --volume NAME [--point SEQ] --mount MNT, or --cleanup")
	}
	return nil
}

func (c *testFailoverCommand) Run(ctx context.Context) error {
	op := replica.Operator{Layout: replica.Layout{Dir: c.dir, Volume: c.volume}, PreparePrimary: volume.Prepare}
	if c.cleanup {
		dest, err := op.CleanupTestFailover()
		if errors.Is(err, replica.ErrTestFailoverMounted) {
			return errors.New("the test failover is still mounted: stop its drfs test-failover process first")
		}
		if err != nil {
			return err
		}
		fmt.Printf("removed the test failover clone %s\n", dest)
		return nil
	}
	var point *uint64
	if c.point != "" {
		seq, err := strconv.ParseUint(c.point, 10, 64)
		if err != nil {
			return fmt.Errorf("--point %q is not a seq", c.point)
		}
		point = &seq
	}
	tf, err := op.StartTestFailover(ctx, point, c.mount)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "drfs: test failover of %s at seq %d: writable clone in %s; replication goes on untouched\n", c.volume, tf.Seq, tf.Dir)
	cfg, err := config.FromMountFlags(config.MountFlags{Source: tf.Source, State: tf.State, Mountpoint: c.mount, Name: tf.Name,
		CheckpointInterval: volume.DefaultCheckpointInterval})
	if err != nil {
		return err
	}
	return (&mountCommand{cfg: cfg}).Run(ctx)
}
