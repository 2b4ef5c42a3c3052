package main

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// countFile is a LoopbackFile that counts the READ and WRITE requests
// the daemon serves. It still implements fs.FilePassthroughFder through
// the embedded *fs.LoopbackFile.
type countFile struct {
	*fs.LoopbackFile
	ios *atomic.Int64
}

func (f *countFile) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.ios.Add(1)
	return f.LoopbackFile.Read(ctx, buf, off)
}

func (f *countFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f.ios.Add(1)
	return f.LoopbackFile.Write(ctx, data, off)
}

// countNode wraps every LoopbackNode (through fs.NodeWrapChilder) so
// that opened files are countFiles.
type countNode struct {
	*fs.LoopbackNode
	ios *atomic.Int64
}

func (n *countNode) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &countNode{LoopbackNode: ops.(*fs.LoopbackNode), ios: n.ios}
}

func (n *countNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return fh, fuseFlags, errno
	}
	return &countFile{LoopbackFile: fh.(*fs.LoopbackFile), ios: n.ios}, fuseFlags, 0
}

// mountCounting mounts a loopback of src on mnt with exactly the options
// drfsloop uses, and returns the number of READ/WRITE requests the daemon
// saw while fn ran.
func mountCounting(t *testing.T, src, mnt string, passthrough bool, fn func()) (ios int64, offered bool) {
	t.Helper()
	lb, err := fs.NewLoopbackRoot(src)
	if err != nil {
		t.Fatal(err)
	}
	counter := new(atomic.Int64)
	root := &countNode{LoopbackNode: lb.(*fs.LoopbackNode), ios: counter}
	root.RootData.RootNode = root

	opts := mountOptions(src, passthrough, false)
	server, err := fs.Mount(mnt, root, opts)
	if err != nil {
		t.Fatalf("mount FUSE: %v", err)
	}
	defer func() {
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	}()
	fn()
	offered = server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0
	if passthroughActive(server, opts) != (passthrough && offered) {
		t.Errorf("passthroughActive = %v, want %v", passthroughActive(server, opts), passthrough && offered)
	}
	return counter.Load(), offered
}

func TestPassthroughKnob(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (FUSE passthrough requires CAP_SYS_ADMIN; make test runs as root)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("no /dev/fuse: %v", err)
	}
	for _, pt := range []bool{false, true} {
		name := "nopassthrough"
		if pt {
			name = "passthrough"
		}
		t.Run(name, func(t *testing.T) {
			src, mnt := t.TempDir(), t.TempDir()
			if err := os.WriteFile(filepath.Join(src, "f"), make([]byte, 1<<16), 0o644); err != nil {
				t.Fatal(err)
			}
			ios, offered := mountCounting(t, src, mnt, pt, func() {
				f, err := os.OpenFile(filepath.Join(mnt, "f"), os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				buf := make([]byte, 4096)
				for i := range buf {
					buf[i] = 0xab
				}
				for i := int64(0); i < 8; i++ {
					if _, err := f.WriteAt(buf, i*4096); err != nil {
						t.Fatal(err)
					}
				}
				if err := f.Sync(); err != nil {
					t.Fatal(err)
				}
				if _, err := f.ReadAt(buf, 12*4096); err != nil {
					t.Fatal(err)
				}
			})
			got, err := os.ReadFile(filepath.Join(src, "f"))
			if err != nil {
				t.Fatal(err)
			}
			if got[0] != 0xab || got[8*4096-1] != 0xab || got[8*4096] != 0 {
				t.Errorf("writes through the mount did not reach the source file")
			}
			t.Logf("kernel offered passthrough: %v; READ/WRITE requests seen by daemon: %d", offered, ios)
			switch {
			case !pt && ios == 0:
				t.Errorf("passthrough disabled but the daemon saw no READ/WRITE requests")
			case pt && !offered:
				// Without kernel support the passthrough mount must fall back to serving
				// every request in the daemon.
				if ios == 0 {
					t.Errorf("kernel does not offer passthrough, yet the daemon saw no READ/WRITE requests")
				}
			case pt && ios != 0:
				t.Errorf("passthrough enabled but the daemon saw %d READ/WRITE requests", ios)
			}
		})
	}
}
