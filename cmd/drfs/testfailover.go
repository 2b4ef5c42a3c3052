package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"drfs/internal/audit"
	"drfs/replica"
	"drfs/volume"
	"drfs/wire"
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
	dest := filepath.Join(c.dir, c.volume, "test-failover")
	logPath := filepath.Join(c.dir, c.volume, "state", audit.FileName)
	if c.cleanup {
		if _, err := os.Stat(dest); err != nil {
			return fmt.Errorf("no test failover clone in %s", dest)
		}
		if _, err := getStatus(filepath.Join(dest, "state")); err == nil {
			return errors.New("the test failover is still mounted: stop its drfs test-failover process first")
		}
		if err := os.RemoveAll(dest); err != nil {
			return err
		}
		audit.Append(logPath, audit.Entry{Action: "test-failover-cleanup", Volume: c.volume, Detail: "removed " + dest}.Who())
		fmt.Printf("removed the test failover clone %s\n", dest)
		return nil
	}
	if _, err := os.Stat(dest); err == nil {
		return fmt.Errorf("a test failover clone exists in %s: run drfs test-failover --cleanup first", dest)
	}
	st, err := replica.ReadState(c.dir, c.volume)
	if err != nil {
		return err
	}
	seq := st.Applied
	if c.point != "" {
		if seq, err = strconv.ParseUint(c.point, 10, 64); err != nil {
			return fmt.Errorf("--point %q is not a seq", c.point)
		}
	}
	req, _ := json.Marshal(wire.CloneRequest{Seq: seq, Dest: dest})
	resp, err := serveClient(c.dir).Post("http://drfs/v1/volumes/"+c.volume+"/clone", "application/json", bytesReader(req))
	if err == nil {
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			var e wire.ErrorReply
			json.NewDecoder(resp.Body).Decode(&e)
			return errors.New(e.Error)
		}
	} else {
		v, err := replica.OpenVolume(c.dir, c.volume, replica.Options{})
		if err != nil {
			return err
		}
		err = v.Clone(seq, dest)
		v.Close()
		if err != nil {
			return err
		}
	}
	name := c.volume + "-test"
	if err := volume.Prepare(volume.PrepareConfig{State: filepath.Join(dest, "state"), Source: filepath.Join(dest, "data"),
		Name: name, ID: st.VolumeID + "-test", Generation: st.Generation, Seq: seq}); err != nil {
		return err
	}
	audit.Append(logPath, audit.Entry{Action: "test-failover", Volume: c.volume, VolumeID: st.VolumeID, GenBefore: st.Generation, GenAfter: st.Generation, Point: seq,
		Detail: "writable clone in " + dest + " mounted on " + c.mount}.Who())
	fmt.Fprintf(os.Stderr, "drfs: test failover of %s at seq %d: writable clone in %s; replication goes on untouched\n", c.volume, seq, dest)
	m := &mountCommand{source: filepath.Join(dest, "data"), state: filepath.Join(dest, "state"), mountpoint: c.mount, name: name}
	return m.Run(ctx)
}
