package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"drfs/config"
	"drfs/control"
	"drfs/daemon"
	"drfs/internal/logging"
)

// daemonCommand is drfs daemon: every volume of a host, from one configuration file.
type daemonCommand struct {
	file         string
	check, print bool
	cfg          *config.Host
}

func (c *daemonCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs daemon", flag.ContinueOnError)
	fs.StringVar(&c.file, "config", config.DefaultFile, "configuration file (see config/doc.go, or the README)")
	fs.BoolVar(&c.check, "check", false, "check the configuration file and exit (every problem is listed)")
	fs.BoolVar(&c.print, "print-config", false, "print the configuration with every default spelled out, and exit")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	var err error
	c.cfg, err = readHostConfig(c.file)
	return err
}

// readHostConfig reads and checks the daemon's configuration file.
func readHostConfig(file string) (*config.Host, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse(file, data)
	var es config.Errors
	if errors.As(err, &es) {
		return nil, fmt.Errorf("%d problems in the configuration, nothing was mounted:\n%w", len(es), err)
	}
	return cfg, err
}

func (c *daemonCommand) Run(ctx context.Context) error {
	if c.print {
		b, err := c.cfg.Marshal()
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(b)
		return err
	}
	if c.check {
		fmt.Printf("%s: configuration OK: %d volumes, %d replica sites\n", c.file, len(c.cfg.Volumes), len(c.cfg.Sites))
		return nil
	}
	logger := newLogger(os.Stderr, c.cfg.Log.Format)
	notify, watchdog := daemon.Systemd(logger)
	h := daemon.New(c.cfg, daemon.Options{Logger: logger, OpenLocal: openLocalReplica, Notify: notify, Watchdog: watchdog})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP: reloading the configuration", "file", c.file)
				if _, err := h.Reload(ctx); err != nil {
					logger.Error("reload", logging.Err(err))
				}
			}
		}
	}()
	logger.Info("drfs daemon starting", "config", c.file, "volumes", len(c.cfg.Volumes), "socket", c.cfg.Socket)
	return h.Run(ctx)
}

// reloadCommand is drfs reload: ask the running daemon to read its configuration again, and
// say what changed (or why nothing did).
type reloadCommand struct {
	socket string
}

func (c *reloadCommand) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("drfs reload", flag.ContinueOnError)
	file := fs.String("config", config.DefaultFile, "the daemon's configuration file (for its socket)")
	fs.StringVar(&c.socket, "socket", "", "the daemon's socket (instead of reading it from --config)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if c.socket == "" {
		var err error
		if c.socket, err = hostSocket(*file); err != nil {
			return err
		}
	}
	return nil
}

// hostSocket is the socket of the daemon configured by file: its socket key, or the default.
// A file that does not parse still names its socket to reach the daemon that runs the old one.
func hostSocket(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && file == config.DefaultFile {
			return config.DefaultSocket, nil
		}
		return "", err
	}
	if cfg, err := config.Parse(file, data); err == nil {
		return cfg.Socket, nil
	}
	return config.SocketOf(data), nil
}

func (c *reloadCommand) Run(ctx context.Context) error {
	res, err := control.NewHostClient(c.socket).Reload(ctx)
	if err != nil {
		return err
	}
	line := func(what string, names []string) {
		if len(names) > 0 {
			fmt.Printf("%-10s %s\n", what, strings.Join(names, ", "))
		}
	}
	line("added", res.Added)
	line("removed", res.Removed)
	line("changed", res.Changed)
	line("untouched", res.Untouched)
	line("bandwidth", res.Bandwidth)
	if len(res.Process) > 0 {
		fmt.Printf("%-10s %s (take effect when drfs daemon restarts)\n", "restart", strings.Join(res.Process, ", "))
	}
	if len(res.Added)+len(res.Removed)+len(res.Changed)+len(res.Bandwidth)+len(res.Process) == 0 {
		fmt.Println("nothing changed")
	}
	return nil
}
