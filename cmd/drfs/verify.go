package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"drfs/control"
	"drfs/internal/units"
)

type verifyCommand struct {
	state string
	json  bool
}

func (c *verifyCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs verify", flag.ContinueOnError)
	fs.StringVar(&c.state, "state", "", "state directory of the mounted, replicating primary (required)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if c.state == "" {
		return errors.New("--state is required")
	}
	return nil
}

func (c *verifyCommand) Run(ctx context.Context) error {
	r, err := control.NewClient(c.state).Verify(ctx)
	if err != nil {
		return err
	}
	if c.json {
		printJSON(r)
	} else {
		fmt.Printf("compared %d files (%s) at seq %d; guests paused %s\n", r.Files, units.Bytes(r.Bytes), r.Seq, r.Pause.Round(time.Millisecond))
		for _, d := range r.Differences {
			where := "whole object"
			if d.Len >= 0 {
				where = fmt.Sprintf("%d bytes at offset %d", d.Len, d.Off)
			}
			fmt.Printf("  %s: %s (%s)\n", d.Path, d.What, where)
		}
		if len(r.Differences) == 0 {
			fmt.Println("the replica is identical")
		}
	}
	if len(r.Differences) > 0 {
		if !c.json {
			fmt.Fprintf(os.Stderr, "drfs verify: %d differences\n", len(r.Differences))
		}
		os.Exit(1)
	}
	return nil
}
