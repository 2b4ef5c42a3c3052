package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"drfs/control"
	"drfs/journal"
)

type journalCommand struct {
	state    string
	from, to uint64
}

func (c *journalCommand) ParseFlags(args []string) error {
	if len(args) == 0 || args[0] != "dump" {
		return errors.New(`usage: drfs journal dump --state DIR [--from SEQ] [--to SEQ]`)
	}
	fs := flag.NewFlagSet("drfs journal dump", flag.ContinueOnError)
	fs.StringVar(&c.state, "state", "", "state directory of a volume that is not mounted (required)")
	fs.Uint64Var(&c.from, "from", 0, "first seq to print")
	fs.Uint64Var(&c.to, "to", math.MaxUint64, "last seq to print")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if c.state == "" {
		return errors.New("--state is required")
	}
	return nil
}

// dumpLine is one record as `drfs journal dump` prints it: metadata only, never file data.
type dumpLine struct {
	Seq     uint64 `json:"seq"`
	Type    string `json:"type"`
	Path    string `json:"path,omitempty"`
	NewPath string `json:"new_path,omitempty"`
	Ino     uint64 `json:"ino,omitempty"`
	Off     int64  `json:"off"`
	Len     int64  `json:"len"`
	Size    int64  `json:"size,omitempty"`
	Mode    uint32 `json:"mode,omitempty"`
	Region  uint64 `json:"region,omitempty"`
	Name    string `json:"name,omitempty"`
}

func (c *journalCommand) Run(ctx context.Context) error {
	if control.Running(ctx, c.state) {
		return errors.New("the volume is mounted: stop drfs before dumping its journal")
	}
	enc := json.NewEncoder(os.Stdout)
	return journal.ReadDir(filepath.Join(c.state, "journal"), journal.Seq(c.from), journal.Seq(c.to), func(r journal.Record) error {
		op, err := journal.DecodeOp(r.Type, r.Payload)
		if err != nil {
			return fmt.Errorf("seq %d: %w", r.Seq, err)
		}
		l := dumpLine{Seq: uint64(r.Seq), Type: r.Type.String(), Ino: op.Inode()}
		if p := op.Paths(); len(p) > 0 {
			l.Path = p[0]
			if len(p) > 1 {
				l.NewPath = p[1] // link, rename
			}
		}
		switch o := op.(type) {
		case journal.OpWrite:
			l.Off, l.Len = o.Off, int64(len(o.Data))
		case journal.OpTruncate:
			l.Size = o.Size
		case journal.OpFallocate:
			l.Off, l.Len, l.Mode = o.Off, o.Len, o.Mode
		case journal.OpCreate:
			l.Mode = o.Mode
		case journal.OpMkdir:
			l.Mode = o.Mode
		case journal.OpMknod:
			l.Mode = o.Mode
		case journal.OpSymlink:
			l.Name = o.Target
		case journal.OpSetattr:
			l.Mode = o.Mode
		case journal.OpSetxattr:
			l.Name = o.Name
		case journal.OpRemovexattr:
			l.Name = o.Name
		case journal.OpHot:
			l.Region = o.Region
		}
		return enc.Encode(l)
	})
}
