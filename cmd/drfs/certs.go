package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"drfs/tlsutil"
)

const certsUsage = `usage:
  drfs certs init    --out DIR --site NAME [--host HOST]...   (the CA's site, normally the replica site)
  drfs certs request --out DIR --site NAME [--host HOST]...   (the other site: key and request)
  drfs certs sign    --ca DIR --site NAME --out OUTDIR REQUEST.csr   (on the CA's site)`

// certsCommand: drfs certs init|request|sign. The CA key stays on the site that ran init; the
// other site makes its own key and a request that the CA's site signs.
type certsCommand struct {
	op        string
	out, site string
	ca, csr   string
	hosts     []string
	force     bool
}

func (c *certsCommand) ParseFlags(args []string) error {
	c.op = "init"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		c.op, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("drfs certs "+c.op, flag.ContinueOnError)
	fs.BoolVar(&c.force, "force", false, "overwrite existing files")
	hostFlag := func() {
		fs.Func("host", "a host name or IP address this site's replica server is reached at (repeatable; loopback is always included)", func(s string) error {
			c.hosts = append(c.hosts, strings.Split(s, ",")...)
			return nil
		})
	}
	switch c.op {
	case "init":
		fs.StringVar(&c.out, "out", "", "directory to write the CA, this site's key and its certificates to (required)")
		fs.StringVar(&c.site, "site", "", "this site's name, e.g. dr (default: the host name)")
		hostFlag()
	case "request":
		fs.StringVar(&c.out, "out", "", "directory to write this site's key and its request SITE.csr to (required)")
		fs.StringVar(&c.site, "site", "", "this site's name, e.g. hq (default: the host name)")
		hostFlag()
	case "sign":
		fs.StringVar(&c.ca, "ca", "", "certificate directory made by drfs certs init, holding the CA key (required)")
		fs.StringVar(&c.site, "site", "", "the name of the site whose request this is (required; the request must say the same)")
		fs.StringVar(&c.out, "out", "", "directory to write the signed certificates and ca.pem to, to carry back to that site (required)")
	default:
		return errors.New(certsUsage)
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if c.out == "" {
		return fmt.Errorf("--out is required\n%s", certsUsage)
	}
	if c.op == "sign" {
		if c.ca == "" || c.site == "" || len(pos) != 1 {
			return fmt.Errorf("drfs certs sign needs --ca, --site and one REQUEST.csr\n%s", certsUsage)
		}
		c.csr = pos[0]
		return nil
	}
	if len(pos) != 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	if c.site == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--site is required: %w", err)
		}
		c.site = strings.ToLower(strings.SplitN(h, ".", 2)[0])
	}
	return tlsutil.ValidSite(c.site)
}

func (c *certsCommand) Run(ctx context.Context) error {
	switch c.op {
	case "init":
		f, err := tlsutil.Init(c.out, c.site, c.hosts, c.force)
		if err != nil {
			return err
		}
		fmt.Printf(`wrote a CA and the certificates of site %q to %s.
  this site serves replicas:  drfs serve --certs %s ...
  and, after a failover:      drfs mount --certs %s ...
Keep %s on this site only (it can sign certificates). On the other site run
  drfs certs request --out DIR --site NAME --host ITS-HOST-NAME
and sign its request here with drfs certs sign.
`, c.site, c.out, c.out, c.out, f.CAKey)
	case "request":
		f, err := tlsutil.Request(c.out, c.site, c.hosts, c.force)
		if err != nil {
			return err
		}
		fmt.Printf(`wrote the key of site %q and its request %s.
Carry %s to the CA's site and run there
  drfs certs sign --ca CA-DIR --site %s --out OUTDIR %s
then copy OUTDIR/ca.pem, primary.pem and replica.pem into %s.
The key (%s) never leaves this site.
`, c.site, f.CSR, f.CSR, c.site, f.CSR, c.out, f.Key)
	case "sign":
		sg, err := tlsutil.Sign(c.ca, c.csr, c.site, c.out, c.force)
		if err != nil {
			return err
		}
		fmt.Printf(`signed the primary and replica certificates of site %q (replica host names: %s).
Copy %s, %s and %s into that site's certificate directory.
`, sg.Site, strings.Join(sg.Hosts, ", "), sg.CA, sg.PrimaryCert, sg.ReplicaCert)
	}
	return nil
}
