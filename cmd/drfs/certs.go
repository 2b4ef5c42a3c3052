package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"drfs/tlsutil"
)

type certsCommand struct {
	out   string
	hosts []string
	force bool
}

func (c *certsCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs certs", flag.ContinueOnError)
	fs.StringVar(&c.out, "out", "", "directory to write the CA and the primary and replica certificates to (required)")
	fs.Func("host", "a host name or IP address of the replica (repeatable; loopback is always included)", func(s string) error {
		c.hosts = append(c.hosts, strings.Split(s, ",")...)
		return nil
	})
	fs.BoolVar(&c.force, "force", false, "overwrite existing files")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if c.out == "" {
		return errors.New("--out is required")
	}
	return nil
}

func (c *certsCommand) Run(ctx context.Context) error {
	f, err := tlsutil.Generate(c.out, c.hosts, c.force)
	if err != nil {
		return err
	}
	fmt.Printf(`wrote a CA and two certificates to %s:
  replica site:  drfs serve --certs %s ...   (uses ca.pem, replica.pem, replica-key.pem)
  primary site:  drfs mount --certs %s ...   (uses ca.pem, primary.pem, primary-key.pem)
Copy the directory to both sites; keep %s private (it can sign new certificates).
`, c.out, c.out, c.out, f.CAKey)
	return nil
}
