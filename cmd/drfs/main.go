// Command drfs is the disaster-recovery filesystem for VM storage: it mounts a journaled view
// of a directory of disk images and (in later subcommands) replicates it to another site.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `drfs — disaster-recovery filesystem for VM storage

Usage:
  drfs daemon [--config FILE] [--check | --print-config]   every volume of this host (default /etc/drfs/drfs.yaml)
  drfs reload [--config FILE | --socket PATH]              make the daemon read its configuration again
  drfs mount --source DIR --state DIR [--volume NAME] [--metrics ADDR [--pprof]]
             [--replica URL [--interval D|continuous | --rpo D] [--bwlimit N] [--journal-max N]
              [--certs DIR]] MOUNTPOINT
  drfs serve --config FILE [--check | --print-config | --reload]   the replica side; SIGHUP or --reload reloads FILE
  drfs serve --dir DIR --listen ADDR --certs DIR [--allow VOLUME=SITE]... [--keep-points N] [--keep-for D] [--metrics ADDR [--pprof]]
  drfs certs init --out DIR --site NAME [--host NAME]... | request --out DIR --site NAME [--host NAME]...
             | sign --ca DIR --site NAME --out DIR REQUEST.csr
  drfs status [--config FILE | --socket PATH | --state DIR | --dir DIR] [--json]
  drfs points --dir DIR --volume NAME [--json]
  drfs sync --state DIR [--timeout D]
  drfs promote --dir DIR --volume NAME [--point SEQ | --time T] [--force]
  drfs failover --planned --state DIR [--timeout D] | --resolve [--force-resume] --state DIR
  drfs reverse --state DIR --dir REPLICA-DIR
  drfs audit (--state DIR | --dir DIR --volume NAME)
  drfs verify --state DIR [--json]
  drfs seed export --state DIR SEEDDIR | drfs seed import --dir REPLICA-DIR SEEDDIR
  drfs apply --dir REPLICA-DIR LOGFILE|LOGDIR...
  drfs test-failover --dir DIR --volume NAME [--point SEQ] --mount MNT | --cleanup
  drfs journal dump --state DIR [--from SEQ] [--to SEQ]

Run "drfs COMMAND -h" for the options of a command.
`

// command is one subcommand: it parses its flags, validates them and runs.
type command interface {
	ParseFlags(args []string) error
	Run(ctx context.Context) error
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var cmd command
	switch os.Args[1] {
	case "daemon":
		cmd = &daemonCommand{}
	case "reload":
		cmd = &reloadCommand{}
	case "mount":
		cmd = &mountCommand{}
	case "status":
		cmd = &statusCommand{}
	case "serve":
		cmd = &serveCommand{}
	case "certs":
		cmd = &certsCommand{}
	case "points":
		cmd = &pointsCommand{}
	case "sync":
		cmd = &syncCommand{}
	case "promote":
		cmd = &promoteCommand{}
	case "failover":
		cmd = &failoverCommand{}
	case "reverse":
		cmd = &reverseCommand{}
	case "audit":
		cmd = &auditCommand{}
	case "verify":
		cmd = &verifyCommand{}
	case "seed":
		cmd = &seedCommand{}
	case "apply":
		cmd = &applyCommand{}
	case "test-failover":
		cmd = &testFailoverCommand{}
	case "journal":
		cmd = &journalCommand{}
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "drfs: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err := cmd.ParseFlags(os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "drfs %s: %v\n", os.Args[1], err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := cmd.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "drfs %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// parseInterspersed parses flags that may appear before or after positional arguments and
// returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseNoArgs parses flags for a command that takes no positional arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("unexpected argument %q", pos[0])
	}
	return nil
}
