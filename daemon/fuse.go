package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	drfsfs "drfs/fs"
	"drfs/internal/logging"
	"drfs/volume"
)

// mountFUSE mounts vol on mnt as drfs does for every volume: kernel passthrough off (writes
// must reach the journal), 1 MiB writes, locks forwarded, and for root allow_other with the
// kernel's permission checks, so a hypervisor's own user works as on the source directory.
func mountFUSE(vol *volume.Volume, mnt string, debug bool) (*fuse.Server, error) {
	root, err := drfsfs.NewRoot(vol)
	if err != nil {
		return nil, err
	}
	attr := time.Second
	opts := &gofs.Options{
		AttrTimeout:  &attr,
		EntryTimeout: &attr,
		MountOptions: fuse.MountOptions{
			AllowOther:    os.Geteuid() == 0,
			FsName:        "drfs:" + vol.Name(),
			Name:          "drfs",
			MaxWrite:      1 << 20,
			MaxBackground: 128,
			DirectMount:   true,
			EnableLocks:   true,
			Debug:         debug,
			// Kernel passthrough would let writes bypass the journal.
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
		},
	}
	if os.Geteuid() == 0 {
		opts.MountOptions.Options = append(opts.MountOptions.Options, "default_permissions")
	}
	return gofs.Mount(mnt, root, opts)
}

// unmount asks the kernel to unmount; while the mount is busy (a guest still has files open)
// it retries for a while and then detaches it lazily, so drfs keeps serving open files until
// they are closed.
func unmount(server *fuse.Server, mnt string, logger *slog.Logger) {
	for i := 0; i < 20; i++ {
		if err := server.Unmount(); err == nil {
			return
		} else if i == 0 {
			logger.Warn("unmount: retrying", "mountpoint", mnt, logging.Err(err))
		}
		time.Sleep(250 * time.Millisecond)
	}
	logger.Warn("mountpoint is busy: detaching lazily; the volume stops when the last open file is closed", "mountpoint", mnt)
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		logger.Warn("lazy unmount", logging.Err(err))
	}
}

// remountReadOnly makes the kernel refuse writes to mnt before they reach drfs (a demoted
// volume refuses them anyway, with EROFS).
func remountReadOnly(mnt string, logger *slog.Logger) {
	mnt, _ = filepath.Abs(mnt)
	if err := unix.Mount(mnt, mnt, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		logger.Warn("remount read-only failed: writes still fail with EROFS in drfs", "mountpoint", mnt, logging.Err(err))
	}
}

// reportStart logs what opening the volume found: a new volume, an unclean stop and what
// recovery did.
func reportStart(logger *slog.Logger, vol *volume.Volume) {
	st := vol.Start()
	switch {
	case st.New:
		logger.Info("initialised new volume")
	case st.Unclean:
		logger.Warn("last stop was not clean: replayed journal records, marked hot regions for resync", "replayed", st.Replayed, "hot_regions", st.HotRegions)
	}
	if st.Recovery.TornBytes > 0 {
		logger.Warn("journal tail was torn: cut it and kept a copy", "bytes", st.Recovery.TornBytes, "kept_in", st.Recovery.BrokenFile)
	}
	if st.ChangedBack > 0 {
		logger.Warn("files were changed in the source while drfs was not mounted; marked for resync", "files", st.ChangedBack)
	}
}
