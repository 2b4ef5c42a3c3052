// Command drfsloop is a plain go-fuse loopback file system. It is the
// benchmark baseline for drfs (see design.md, "Performance method"):
// without --passthrough every read and write goes through this daemon,
// which is the honest ceiling for drfs; with --passthrough the kernel
// forwards reads and writes straight to the backing files (FUSE
// passthrough, Linux >= 6.9), which is the kernel's ceiling.
//
// Usage:
//
//	drfsloop [--passthrough] [--debug] SOURCE MOUNTPOINT
//
// It runs in the foreground, prints "mounted" on stdout once the mount
// is ready, and unmounts on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// mountOptions returns the options drfsloop mounts with. go-fuse
// negotiates fuse.CAP_PASSTHROUGH by default and LoopbackFile implements
// fs.FilePassthroughFder, so passthrough is on unless the capability is
// masked out with MountOptions.DisabledCapabilities. With the capability
// masked, registering a backing fd fails and go-fuse falls back to
// serving every READ/WRITE in the daemon.
func mountOptions(source string, passthrough, debug bool) *fs.Options {
	timeout := time.Second
	opts := &fs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		MountOptions: fuse.MountOptions{
			AllowOther:  true,
			MaxWrite:    1 << 20,
			DirectMount: true,
			FsName:      source,
			Name:        "drfsloop",
			Debug:       debug,
		},
	}
	if !passthrough {
		opts.MountOptions.DisabledCapabilities |= fuse.CAP_PASSTHROUGH
	}
	return opts
}

// passthroughActive reports whether the kernel offered FUSE passthrough
// and we did not mask it out, i.e. whether it was negotiated.
func passthroughActive(server *fuse.Server, opts *fs.Options) bool {
	ks := server.KernelSettings()
	if ks == nil {
		return false
	}
	return ks.Flags64()&fuse.CAP_PASSTHROUGH != 0 &&
		opts.MountOptions.DisabledCapabilities&fuse.CAP_PASSTHROUGH == 0
}

func main() {
	passthrough := flag.Bool("passthrough", false, "leave FUSE kernel passthrough on (default off: the daemon sees every I/O)")
	debug := flag.Bool("debug", false, "log every FUSE request")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [--passthrough] [--debug] SOURCE MOUNTPOINT\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	source, mnt := flag.Arg(0), flag.Arg(1)

	root, err := fs.NewLoopbackRoot(source)
	if err != nil {
		fmt.Fprintf(os.Stderr, "drfsloop: source %s: %v\n", source, err)
		os.Exit(1)
	}
	opts := mountOptions(source, *passthrough, *debug)
	server, err := fs.Mount(mnt, root, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "drfsloop: mount %s: %v\n", mnt, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "drfsloop: %s on %s, kernel passthrough negotiated: %v\n",
		source, mnt, passthroughActive(server, opts))
	fmt.Println("mounted")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		server.Wait()
		close(done)
	}()

	select {
	case <-done:
		// Unmounted from outside (umount, fusermount3 -u).
		return
	case sig := <-sigs:
		fmt.Fprintf(os.Stderr, "drfsloop: %v, unmounting %s\n", sig, mnt)
	}
	// The mount may be briefly busy (a benchmark's last fd closing);
	// retry for a few seconds before giving up.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := server.Unmount()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "drfsloop: unmount %s: %v\n", mnt, err)
			os.Exit(1)
		}
		select {
		case <-done:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	<-done
}
