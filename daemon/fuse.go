package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
func mountFUSE(vol *volume.Volume, mnt string, logger *slog.Logger, debug bool) (*fuse.Server, error) {
	detachDead(mnt, logger)
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

// fuseConn is the number of the FUSE connection mounted at mnt (its directory in
// /sys/fs/fuse/connections): the minor of the mount's anonymous device.
func fuseConn(mnt string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		return 0, err
	}
	return unix.Minor(st.Dev), nil
}

// heldElsewhere is how long unmount waits for the FUSE connection to end once the kernel
// unmounted it here, before it concludes that another mount namespace holds a copy.
const heldElsewhere = 3 * time.Second

// unmount asks the kernel to unmount; while the mount is busy (a guest still has files open)
// it retries for a while and then detaches it lazily, so drfs keeps serving open files until
// they are closed. A mount gone here may still be held by another mount namespace that was
// made while it was mounted (a private root propagation: `ip netns exec`, unshare, containers):
// the connection then never ends, and unmount aborts it (conn is its number, 0 when unknown).
func unmount(server *fuse.Server, mnt string, conn uint32, logger *slog.Logger) {
	for i := 0; i < 20; i++ {
		errc := make(chan error, 1)
		go func() { errc <- server.Unmount() }()
		select {
		case err := <-errc:
			if err == nil {
				return
			}
			if i == 0 {
				logger.Warn("unmount: retrying", "mountpoint", mnt, logging.Err(err))
			}
			time.Sleep(250 * time.Millisecond)
			continue
		case <-time.After(heldElsewhere):
		}
		logger.Warn("unmounted here, but another mount namespace still holds the mount: aborting its FUSE connection (files open there get ENOTCONN)", "mountpoint", mnt, "connection", conn)
		if err := abortConn(conn); err != nil {
			logger.Warn("abort FUSE connection: drfs waits until the other namespace lets the mount go", "connection", conn, logging.Err(err))
		}
		<-errc
		return
	}
	logger.Warn("mountpoint is busy: detaching lazily; the volume stops when the last open file is closed", "mountpoint", mnt)
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		logger.Warn("lazy unmount", logging.Err(err))
	}
}

// fusectl is where the kernel's FUSE control filesystem is mounted.
const fusectl = "/sys/fs/fuse/connections"

// abortConn aborts FUSE connection conn through fusectl, mounting fusectl first if needed.
func abortConn(conn uint32) error {
	if conn == 0 {
		return errors.New("connection number unknown")
	}
	abort := filepath.Join(fusectl, strconv.FormatUint(uint64(conn), 10), "abort")
	if _, err := os.Stat(abort); err != nil {
		if err := unix.Mount("fusectl", fusectl, "fusectl", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount fusectl on %s: %w", fusectl, err)
		}
	}
	return os.WriteFile(abort, []byte("1"), 0o200)
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

// fuseType is the mountinfo file system type of a drfs mount (go-fuse's Name "drfs").
const fuseType = "fuse.drfs"

// detachDead lazily unmounts what a drfs that died (kill -9, a panic, systemd's watchdog
// abort) left on mnt. Its FUSE mount stays behind, answers every access with ENOTCONN, and
// the kernel refuses to mount over it: without this, a restarted daemon (Restart=on-failure)
// could never bring the volume back by itself. Only a dead drfs mount is touched; a live one,
// or another file system, is left to fail the mount as before.
func detachDead(mnt string, logger *slog.Logger) {
	// Resolve the parent only: the mountpoint itself cannot be looked at.
	path := mnt
	if dir, err := filepath.EvalSymlinks(filepath.Dir(mnt)); err == nil {
		path = filepath.Join(dir, filepath.Base(mnt))
	}
	// Mounts can be stacked (several crashes in a row): detach until the directory answers.
	for i := 0; i < 16; i++ {
		// statfs, not stat: the kernel answers stat from its attribute cache for a while
		// after the daemon died; every statfs asks the daemon.
		var st unix.Statfs_t
		if err := unix.Statfs(path, &st); !errors.Is(err, unix.ENOTCONN) {
			return
		}
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return
		}
		fstype := mountType(f, path)
		f.Close()
		if fstype != fuseType {
			logger.Warn("mountpoint does not answer (ENOTCONN) and is not a drfs mount: leaving it", "mountpoint", mnt, "type", fstype)
			return
		}
		logger.Warn("mountpoint holds the dead mount of a drfs that did not stop cleanly: detaching it lazily; programs that kept files open on it must open them again", "mountpoint", mnt)
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			logger.Warn("detach dead mount", "mountpoint", mnt, logging.Err(err))
			return
		}
	}
}

// mountType returns the file system type of the topmost mount on path in mountinfo (the
// format of proc(5) /proc/self/mountinfo), or "" when nothing is mounted there.
func mountType(mountinfo io.Reader, path string) string {
	fstype := ""
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != path {
			continue
		}
		for i := 5; i+1 < len(fields); i++ {
			if fields[i] == "-" {
				// Later lines are mounted later: the last match is the top of a stack.
				fstype = fields[i+1]
				break
			}
		}
	}
	return fstype
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space, \011, \012, \134).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			o := s[i+1 : i+4]
			if o[0] >= '0' && o[0] <= '3' && o[1] >= '0' && o[1] <= '7' && o[2] >= '0' && o[2] <= '7' {
				b.WriteByte((o[0]-'0')<<6 | (o[1]-'0')<<3 | (o[2] - '0'))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
