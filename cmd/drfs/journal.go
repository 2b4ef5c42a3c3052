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
		l := dumpLine{Seq: uint64(r.Seq), Type: r.Type.String()}
		switch o := op.(type) {
		case journal.OpWrite:
			l.Path, l.Ino, l.Off, l.Len = o.Path, o.Ino, o.Off, int64(len(o.Data))
		case journal.OpTruncate:
			l.Path, l.Ino, l.Size = o.Path, o.Ino, o.Size
		case journal.OpFallocate:
			l.Path, l.Ino, l.Off, l.Len, l.Mode = o.Path, o.Ino, o.Off, o.Len, o.Mode
		case journal.OpCreate:
			l.Path, l.Ino, l.Mode = o.Path, o.Ino, o.Mode
		case journal.OpMkdir:
			l.Path, l.Ino, l.Mode = o.Path, o.Ino, o.Mode
		case journal.OpMknod:
			l.Path, l.Ino, l.Mode = o.Path, o.Ino, o.Mode
		case journal.OpSymlink:
			l.Path, l.Ino, l.Name = o.Path, o.Ino, o.Target
		case journal.OpLink:
			l.Path, l.NewPath, l.Ino = o.OldPath, o.NewPath, o.Ino
		case journal.OpUnlink:
			l.Path, l.Ino = o.Path, o.Ino
		case journal.OpRmdir:
			l.Path, l.Ino = o.Path, o.Ino
		case journal.OpRename:
			l.Path, l.NewPath, l.Ino = o.OldPath, o.NewPath, o.Ino
		case journal.OpSetattr:
			l.Path, l.Ino, l.Mode = o.Path, o.Ino, o.Mode
		case journal.OpSetxattr:
			l.Path, l.Ino, l.Name = o.Path, o.Ino, o.Name
		case journal.OpRemovexattr:
			l.Path, l.Ino, l.Name = o.Path, o.Ino, o.Name
		case journal.OpHot:
			l.Ino, l.Region = o.Ino, o.Region
		}
		return enc.Encode(l)
	})
}
