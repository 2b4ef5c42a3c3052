package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"sort"

	"drfs/changelog"
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
	// Order the logs by their headers alone; each is decoded only when its turn comes, so
	// memory holds one log at a time however many the medium carries.
	type logFile struct {
		path string
		h    changelog.Header
	}
	var logs []logFile
	for _, f := range c.files {
		h, err := changelog.ReadFileHeader(f)
		if err != nil {
			return err
		}
		logs = append(logs, logFile{f, h})
	}
	sort.SliceStable(logs, func(i, j int) bool { return logs[i].h.FromSeq < logs[j].h.FromSeq })
	vols := map[string]*replica.Volume{}
	defer func() {
		for _, v := range vols {
			v.Close()
		}
	}()
	names := map[string]string{} // volume ID -> name, from the replica directory
	if ents, err := filepath.Glob(filepath.Join(c.dir, "*", "state", "state.json")); err == nil {
		for _, e := range ents {
			name := filepath.Base(filepath.Dir(filepath.Dir(e)))
			v, err := replica.OpenVolume(c.dir, name, replica.Options{})
			if err != nil {
				return err
			}
			vols[name] = v
			names[v.State().VolumeID] = name
		}
	}
	applied, skipped := 0, 0
	for _, lf := range logs {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := lf.h
		name, ok := names[h.VolumeID]
		if !ok {
			return fmt.Errorf("log %d-%d belongs to volume %s, which %s does not hold: seed it first", h.FromSeq, h.ToSeq, h.VolumeID, c.dir)
		}
		l, err := changelog.ReadFile(lf.path, changelog.Limits{})
		if err != nil {
			return err
		}
		before := vols[name].State().Applied
		seq, err := vols[name].Apply(l)
		if err != nil {
			return fmt.Errorf("log %d-%d: %w", h.FromSeq, h.ToSeq, err)
		}
		if seq == before {
			skipped++
		} else {
			applied++
		}
	}
	fmt.Printf("applied %d change logs (%d already applied)\n", applied, skipped)
	return nil
}
