package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"drfs/config"
	"drfs/daemon"
	"drfs/replica"
	"drfs/shipper"
	"drfs/volume"
)

// mountCommand is drfs mount: one volume, configured by flags, run by the same code as every
// volume of drfs daemon.
type mountCommand struct {
	f   config.MountFlags
	cfg *config.Host
}

func (c *mountCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs mount", flag.ContinueOnError)
	f := &c.f
	fs.StringVar(&f.Source, "source", "", "directory that holds the real files (required)")
	fs.StringVar(&f.State, "state", "", "directory for the journal and metadata, outside source and mountpoint (required)")
	fs.StringVar(&f.Name, "volume", "", "volume name (default: base name of the source)")
	fs.StringVar(&f.Metrics, "metrics", "", "serve Prometheus metrics on this address, e.g. 127.0.0.1:9750")
	fs.BoolVar(&f.Pprof, "pprof", false, "also serve Go profiles on a non-loopback --metrics address (on loopback they always are)")
	fs.DurationVar(&f.CheckpointInterval, "checkpoint-interval", volume.DefaultCheckpointInterval, "how often source files are synced and the journal trimmed")
	fs.StringVar(&f.SegmentSize, "segment-size", "64M", "size of a journal segment file (preallocated)")
	fs.BoolVar(&f.Debug, "debug", false, "log every FUSE request")
	fs.BoolVar(&f.SkipUnreplayable, "skip-unreplayable", false, "after a crash, start even if journal records cannot be replayed into the source (those files are marked for resync)")
	logFormatFlag(fs, &f.LogFormat)
	fs.StringVar(&f.Replica, "replica", "", "replicate to https://HOST:PORT (drfs serve), file:///DIR (a replica directory here) or export:///DIR (change-log files for offline transport)")
	fs.StringVar(&f.Interval, "interval", "", `ship every DURATION (e.g. 30s, 5m) or "continuous" (default 30s)`)
	fs.DurationVar(&f.RPO, "rpo", 0, "ship early enough to keep replica lag under this target (instead of --interval)")
	fs.StringVar(&f.BWLimit, "bwlimit", "", "bandwidth limit to the replica, bytes per second (e.g. 20M)")
	fs.StringVar(&f.JournalMax, "journal-max", "", "journal size kept for an absent replica before degrading to a dirty-extent map (e.g. 10G)")
	fs.StringVar(&f.Certs, "certs", "", "certificate directory of this site (ca.pem, primary.pem, key.pem; see `drfs certs`)")
	fs.BoolVar(&f.Insecure, "insecure", false, "allow a plaintext http:// replica on a loopback address (tests only)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: drfs mount --source DIR --state DIR [--volume NAME] [--metrics ADDR] MOUNTPOINT")
		fmt.Fprintln(fs.Output(), "(every volume of a host at once, from one file: drfs daemon --config FILE)")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("exactly one MOUNTPOINT is required")
	}
	f.Mountpoint = pos[0]
	if f.Source == "" || f.State == "" {
		return errors.New("--source and --state are required")
	}
	if st, err := os.Stat(f.Mountpoint); err != nil || !st.IsDir() {
		return fmt.Errorf("mountpoint %s must be an existing directory", f.Mountpoint)
	}
	c.cfg, err = config.FromMountFlags(*f)
	return err
}

func (c *mountCommand) Run(ctx context.Context) error {
	logger := newLogger(os.Stderr, c.cfg.Log.Format)
	h := daemon.New(c.cfg, daemon.Options{
		Logger: logger, OpenLocal: openLocalReplica, Single: true,
		Progress:  func(string) func(done, total int64) { return progressBar("initial sync") },
		OnMounted: func(string) { fmt.Println("mounted") },
	})
	return h.Run(ctx)
}

// openLocalReplica opens a replica directory on this host (file:///DIR replicas).
func openLocalReplica(dir, name string, logger *slog.Logger) (shipper.Target, error) {
	return replica.OpenLocalTarget(dir, name, replica.Options{Logger: logger, PreparePrimary: volume.Prepare})
}
