package main

import (
	"strings"
	"testing"
)

// Every command parses its documented arguments, and refuses bad ones with a message.
func TestParseFlags(t *testing.T) {
	mnt := t.TempDir()
	for _, c := range []struct {
		cmd  command
		args string
		bad  string // "" = must parse; otherwise a substring of the error
	}{
		{&mountCommand{}, "--source s --state t " + mnt, ""},
		{&mountCommand{}, mnt + " --source s --state t --replica https://h:1 --certs c --rpo 30s --journal-max 10G --bwlimit 20M", ""},
		{&mountCommand{}, "--source s --state t", "MOUNTPOINT"},
		{&mountCommand{}, "--source s --state t --replica http://10.0.0.1:1 " + mnt, "plaintext"},
		{&mountCommand{}, "--source s --state t --replica http://127.0.0.1:1 --insecure " + mnt, ""},
		{&mountCommand{}, "--source s --state t --interval 5m " + mnt, "set --replica"},
		{&mountCommand{}, "--source s --state t --segment-size 512K " + mnt, "at least 1M"},
		{&mountCommand{}, "--source s --state t --replica https://h:1 " + mnt, "--certs"},
		{&mountCommand{}, "--source s --state t --replica file:///r --journal-max lots " + mnt, "not a size"},
		{&serveCommand{}, "--dir d --listen 127.0.0.1:0 --insecure", ""},
		{&serveCommand{}, "--dir d --listen 0.0.0.0:9 --insecure", "loopback"},
		{&serveCommand{}, "--dir d --listen 127.0.0.1:0", "--certs"},
		{&serveCommand{}, "--dir d --listen 127.0.0.1:0 --insecure --log-format json", ""},
		{&serveCommand{}, "--dir d --listen 127.0.0.1:0 --insecure --log-format xml", "text or json"},
		{&mountCommand{}, "--source s --state t --log-format text " + mnt, ""},
		{&certsCommand{}, "--out d --site dr --host a,b", ""},
		{&certsCommand{}, "init --out d --site dr", ""},
		{&certsCommand{}, "request --out d --site hq --host h", ""},
		{&certsCommand{}, "sign --ca d --site hq --out o d/hq.csr", ""},
		{&certsCommand{}, "sign --ca d --out o d/hq.csr", "--site"},
		{&certsCommand{}, "init --out d --site Bad_Name", "invalid site"},
		{&serveCommand{}, "--dir d --listen 127.0.0.1:0 --insecure --allow vms", "VOLUME=SITE"},
		{&statusCommand{}, "--state s --json", ""},
		{&statusCommand{}, "--dir d", ""},
		{&statusCommand{}, "--state s --dir d", "either"},
		{&statusCommand{}, "", ""},
		{&statusCommand{}, "--config c.yaml --json", ""},
		{&statusCommand{}, "--socket /run/x.sock --state s", "either"},
		{&reloadCommand{}, "--socket /run/x.sock", ""},
		{&statusCommand{}, "--state s extra", "unexpected argument"},
		{&pointsCommand{}, "--dir d --volume v --json", ""},
		{&syncCommand{}, "--state s --timeout 5s", ""},
		{&promoteCommand{}, "--dir d --volume v --point 5 --force", ""},
		{&promoteCommand{}, "--dir d --volume v --point 5 --time 2026-01-01T00:00:00Z", "either"},
		{&failoverCommand{}, "--planned --state s", ""},
		{&failoverCommand{}, "--state s", "--planned"},
		{&reverseCommand{}, "--state s --dir d", ""},
		{&auditCommand{}, "--dir d --volume v --json", ""},
		{&auditCommand{}, "--dir d", "--volume"},
		{&verifyCommand{}, "--state s --json", ""},
		{&seedCommand{}, "export --state s seed", ""},
		{&seedCommand{}, "import --dir d --volume v seed", ""},
		{&seedCommand{}, "import --dir d", "SEEDDIR"},
		{&applyCommand{}, "--dir d log.dcl", ""},
		{&testFailoverCommand{}, "--dir d --volume v --point 3 --mount m", ""},
		{&testFailoverCommand{}, "--dir d --volume v --cleanup", ""},
		{&testFailoverCommand{}, "--dir d --volume v", "usage"},
		{&journalCommand{}, "dump --state s --from 3", ""},
	} {
		err := c.cmd.ParseFlags(strings.Fields(c.args))
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%T %q: %v", c.cmd, c.args, err)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("%T %q: error %v, want one containing %q", c.cmd, c.args, err, c.bad)
		}
	}
}
