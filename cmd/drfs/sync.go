package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"drfs/control"
)

type syncCommand struct {
	state   string
	timeout time.Duration
}

func (c *syncCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs sync", flag.ContinueOnError)
	fs.StringVar(&c.state, "state", "", "state directory of a mounted, replicating volume (required)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after this long")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if c.state == "" {
		return errors.New("--state is required")
	}
	return nil
}

// Run ships everything journaled so far and waits for the replica's acknowledgement.
func (c *syncCommand) Run(ctx context.Context) error {
	t0 := time.Now()
	r, err := control.NewClient(c.state).Sync(ctx, c.timeout)
	if err != nil {
		return err
	}
	fmt.Printf("replica acknowledged seq %d (%s)\n", r.AckedSeq, time.Since(t0).Round(time.Millisecond))
	return nil
}
