package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"drfs/replica"
)

// applyCommand: drfs apply --dir REPLICA-DIR FILE|DIR... applies change-log files carried
// offline (written by a primary mounted with --replica export:///DIR).
type applyCommand struct {
	dir   string
	files []string
}

func (c *applyCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs apply", flag.ContinueOnError)
	fs.StringVar(&c.dir, "dir", "", "replica directory (required; drfs serve must not be running on it)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if c.dir == "" || len(pos) == 0 {
		return errors.New("usage: drfs apply --dir REPLICA-DIR LOGFILE|LOGDIR [LOGFILE|LOGDIR]")
	}
	for _, p := range pos {
		if m, _ := filepath.Glob(filepath.Join(p, "*.dcl")); len(m) > 0 {
			c.files = append(c.files, m...)
		} else {
			c.files = append(c.files, p)
		}
	}
	return nil
}

func (c *applyCommand) Run(ctx context.Context) error {
	res, err := replica.ApplyFiles(ctx, c.dir, c.files, replica.Options{})
	if err != nil {
		return err
	}
	fmt.Printf("applied %d change logs (%d already applied)\n", res.Applied, res.Skipped)
	return nil
}
