package main

import (
	"drfs/internal/logging"
	"log/slog"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// remountReadOnly makes the kernel refuse writes to mnt before they reach drfs (a demoted
// volume refuses them anyway, with EROFS).
func remountReadOnly(mnt string, logger *slog.Logger) {
	mnt, _ = filepath.Abs(mnt)
	if err := unix.Mount(mnt, mnt, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		logger.Warn("remount read-only failed: writes still fail with EROFS in drfs", "mountpoint", mnt, logging.Err(err))
	}
}

func lazyUnmount(mnt string) error { return unix.Unmount(mnt, unix.MNT_DETACH) }
