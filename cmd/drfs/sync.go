package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"time"
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
	var r struct {
		Acked uint64 `json:"acked_seq"`
	}
	if err := callControl(c.state, "/sync?"+url.Values{"timeout": {c.timeout.String()}}.Encode(), &r); err != nil {
		return err
	}
	fmt.Printf("replica acknowledged seq %d (%s)\n", r.Acked, time.Since(t0).Round(time.Millisecond))
	return nil
}
