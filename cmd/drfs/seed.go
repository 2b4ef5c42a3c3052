package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"drfs/control"
	"drfs/internal/audit"
	"drfs/replica"
	"drfs/seed"
)

// seedCommand: drfs seed export --state DIR SEEDDIR | drfs seed import --dir REPLICA-DIR SEEDDIR
type seedCommand struct {
	op, state, dir, seedDir, volume string
}

func (c *seedCommand) ParseFlags(args []string) error {
	if len(args) == 0 || (args[0] != "export" && args[0] != "import") {
		return errors.New("usage: drfs seed export --state DIR SEEDDIR | drfs seed import --dir REPLICA-DIR SEEDDIR")
	}
	c.op = args[0]
	fs := flag.NewFlagSet("drfs seed "+c.op, flag.ContinueOnError)
	if c.op == "export" {
		fs.StringVar(&c.state, "state", "", "state directory of the mounted volume (required)")
	} else {
		fs.StringVar(&c.dir, "dir", "", "replica directory to install the seed in (required)")
		fs.StringVar(&c.volume, "volume", "", "expected volume name (refuses a seed of another volume)")
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("exactly one SEEDDIR is required")
	}
	c.seedDir, err = filepath.Abs(pos[0])
	if err != nil {
		return err
	}
	if c.state == "" && c.dir == "" {
		return fmt.Errorf("drfs seed %s needs --state or --dir", c.op)
	}
	return nil
}

func (c *seedCommand) Run(ctx context.Context) error {
	if c.op == "import" {
		m, err := seed.Import(c.seedDir, c.dir, c.volume)
		if err != nil {
			return err
		}
		audit.Append(replica.Layout{Dir: c.dir, Volume: m.Name}.Audit(), audit.Entry{Action: "seed-import",
			Volume: m.Name, VolumeID: m.VolumeID, GenBefore: m.Generation, GenAfter: m.Generation, Point: m.Seq, Detail: "from " + c.seedDir}.Who())
		fmt.Printf("installed volume %s at seq %d (%d files, checked against the manifest) in %s\nstart drfs serve on %s and mount the primary with --replica: only changes made after the export travel\n",
			m.Name, m.Seq, len(m.Files), replica.Layout{Dir: c.dir, Volume: m.Name}.Root(), c.dir)
		return nil
	}
	r, err := control.NewClient(c.state).SeedExport(ctx, c.seedDir)
	if err != nil {
		return err
	}
	fmt.Printf("exported a consistent copy at seq %d (%d files) to %s\ncarry it to the replica site and run: drfs seed import --dir REPLICA-DIR %s\n", r.Seq, r.Files, c.seedDir, c.seedDir)
	return nil
}
