// Command loopbackd is a development stand-in for `drfs mount`: a plain
// go-fuse loopback with the same command line (`mount --source SRC --state
// STATE [--volume NAME] [--metrics ADDR] MNT`). It journals nothing; the e2e
// harness only uses it when DRFS_E2E_DAEMON=standin is set.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

type node struct{ fs.LoopbackNode }

// noPT hides LoopbackFile.PassthroughFd so every I/O reaches the daemon.
type noPT struct{ *fs.LoopbackFile }

func (noPT) PassthroughFd() (int, bool) { return -1, false }

func wrap(fh fs.FileHandle) fs.FileHandle {
	if lf, ok := fh.(*fs.LoopbackFile); ok {
		return noPT{lf}
	}
	return fh
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, e := n.LoopbackNode.Open(ctx, flags)
	return wrap(fh), fl, e
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, e := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return in, wrap(fh), fl, e
}

func main() {
	if len(os.Args) < 2 || os.Args[1] != "mount" {
		fmt.Fprintln(os.Stderr, "loopbackd: only `mount` is implemented")
		os.Exit(2)
	}
	fl := flag.NewFlagSet("mount", flag.ExitOnError)
	src := fl.String("source", "", "")
	state := fl.String("state", "", "")
	fl.String("volume", "", "")
	fl.String("metrics", "", "")
	fl.Parse(os.Args[2:])
	if *src == "" || *state == "" || fl.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: loopbackd mount --source SRC --state STATE MNT")
		os.Exit(2)
	}
	root := &fs.LoopbackRoot{Path: *src}
	st := syscall.Stat_t{}
	if err := syscall.Stat(*src, &st); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root.Dev = uint64(st.Dev)
	//lint:ignore SA1019 the stand-in mirrors how drfs builds its nodes.
	root.NewNode = func(r *fs.LoopbackRoot, parent *fs.Inode, name string, st *syscall.Stat_t) fs.InodeEmbedder {
		return &node{fs.LoopbackNode{RootData: r}}
	}
	root.RootNode = root.NewNode(root, nil, "", &st) //lint:ignore SA1019 see above
	srv, err := fs.Mount(fl.Arg(0), root.RootNode, &fs.Options{MountOptions: fuse.MountOptions{
		AllowOther: true, DirectMount: true, EnableLocks: true, MaxWrite: 1 << 20, MaxBackground: 64,
		FsName: "drfs-standin", Name: "drfs",
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "mount:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; srv.Unmount() }()
	srv.Wait()
}
