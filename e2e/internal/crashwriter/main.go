// Command crashwriter writes self-describing 4 KiB blocks (see blockfmt) with
// O_DIRECT at random offsets of FILE from several goroutines, fdatasyncs every
// -sync writes, and after each write returns appends "off gen\n" to LOG with
// one write(2). It runs until a write fails (the daemon was killed) or
// -duration passes. With -synclog, after each fdatasync returns a worker appends
// the "off gen" lines of the writes it made since its previous fdatasync to
// that file with one write(2): the writes that must survive a power loss.
// Worker w owns the blocks b with b%workers == w, so the
// log order per offset is the write order per offset.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"drfs/e2e/internal/blockfmt"

	"golang.org/x/sys/unix"
)

func main() {
	file := flag.String("file", "", "target file (opened O_DIRECT)")
	logPath := flag.String("log", "", "completion log (outside the mount)")
	blocks := flag.Uint64("blocks", 16384, "number of 4 KiB blocks in file")
	workers := flag.Int("workers", 4, "writer goroutines")
	syncEvery := flag.Int("sync", 16, "fdatasync every N writes per worker")
	duration := flag.Duration("duration", 60*time.Second, "maximum run time")
	firstGen := flag.Uint64("firstgen", 1, "generation of the first write (later runs on the same file continue above earlier ones)")
	syncLogPath := flag.String("synclog", "", "log of the fsynced writes (outside the mount; optional)")
	flag.Parse()

	fd, err := unix.Open(*file, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open %s: %v\n", *file, err)
		os.Exit(1)
	}
	logFd, err := unix.Open(*logPath, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open log: %v\n", err)
		os.Exit(1)
	}
	syncLogFd := -1
	if *syncLogPath != "" {
		syncLogFd, err = unix.Open(*syncLogPath, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "open synclog: %v\n", err)
			os.Exit(1)
		}
	}
	var gen atomic.Uint64
	gen.Store(*firstGen - 1)
	var writes, syncs atomic.Int64
	var stop atomic.Bool
	var firstErr atomic.Value
	deadline := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf, err := unix.Mmap(-1, 0, blockfmt.Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
			if err != nil {
				firstErr.CompareAndSwap(nil, fmt.Sprintf("mmap: %v", err))
				stop.Store(true)
				return
			}
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			per := *blocks / uint64(*workers)
			var unsynced []byte // log lines of writes since the last fdatasync
			for n := 1; !stop.Load() && time.Now().Before(deadline); n++ {
				b := rng.Uint64N(per)*uint64(*workers) + uint64(w)
				g := gen.Add(1)
				blockfmt.Fill(buf, b, g)
				off := int64(b) * blockfmt.Size
				if _, err := unix.Pwrite(fd, buf, off); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Sprintf("pwrite off=%d gen=%d: %v", off, g, err))
					stop.Store(true)
					return
				}
				rec := strconv.FormatInt(off, 10) + " " + strconv.FormatUint(g, 10) + "\n"
				if _, err := unix.Write(logFd, []byte(rec)); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Sprintf("log write: %v", err))
					stop.Store(true)
					return
				}
				writes.Add(1)
				unsynced = append(unsynced, rec...)
				if n%*syncEvery == 0 {
					if err := unix.Fdatasync(fd); err != nil {
						firstErr.CompareAndSwap(nil, fmt.Sprintf("fdatasync: %v", err))
						stop.Store(true)
						return
					}
					syncs.Add(1)
					if syncLogFd >= 0 {
						if _, err := unix.Write(syncLogFd, unsynced); err != nil {
							firstErr.CompareAndSwap(nil, fmt.Sprintf("synclog write: %v", err))
							stop.Store(true)
							return
						}
					}
					unsynced = unsynced[:0]
				}
			}
		}(w)
	}
	wg.Wait()
	e, _ := firstErr.Load().(string)
	fmt.Printf("writes=%d syncs=%d maxgen=%d err=%q\n", writes.Load(), syncs.Load(), gen.Load(), e)
}
