package volume

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"drfs/internal/logging"
	"drfs/journal"
)

// Defaults for Config fields left zero.
const (
	DefaultRegionSize         = 64 << 20
	DefaultCheckpointInterval = 30 * time.Second
	DefaultCheckpointBytes    = 512 << 20
)

// ErrLocked is returned by Open when another drfs process holds the state directory.
var ErrLocked = errors.New("volume: state directory in use")

// Config describes one volume.
type Config struct {
	Source     string // directory holding the real files
	State      string // journal and metadata; never inside Source or Mountpoint
	Mountpoint string // optional; only used for validation
	Name       string // volume name; defaults to the base name of Source

	SegmentSize        int64         // journal segment size (journal default when 0)
	RegionSize         int64         // activity-log region size (DefaultRegionSize when 0)
	CheckpointInterval time.Duration // < 0 disables the periodic checkpoint
	CheckpointBytes    int64         // checkpoint early when this much journal accumulated

	// SkipUnreplayable starts the volume even when journal records cannot be replayed into
	// existing source files after an unclean stop (the operator's explicit choice); those
	// files are marked for resync. Without it Open refuses with ErrUnreplayable.
	SkipUnreplayable bool

	// Logger receives the volume's messages (with a volume attribute added); nil discards them.
	Logger *slog.Logger

	allowDemoted bool // Diverge opens a demoted state to read its journal
}

// Volume is an open drfs volume on the primary.
type Volume struct {
	cfg    Config
	src    string // absolute, symlinks resolved
	srcFd  int    // directory fd of src: every path from a record is resolved beneath it
	lock   *os.File
	meta   *Meta
	j      *journal.Journal
	id     string
	name   string
	log    *slog.Logger
	start  StartInfo
	closed atomic.Bool

	// opLock orders mutations against each other and against checkpoints. Data mutations
	// (write, truncate, fallocate) hold it shared from path resolution until their backing
	// syscall returned; namespace and attribute mutations hold it exclusively, so a data
	// record's path is never stale relative to a rename journaled before it.
	opLock sync.RWMutex

	hot        atomic.Pointer[hotEpoch]
	ckMu       sync.Mutex // serialises checkpoints
	ckSeq      atomic.Uint64
	ckJournal  atomic.Int64 // journal bytes appended at the last checkpoint
	appended   atomic.Int64
	retainFrom atomic.Pointer[func() journal.Seq]
	readOnly   atomic.Pointer[string] // set once the volume was demoted
	fenced     atomic.Pointer[string] // set while a planned failover's outcome is open
	onFull     atomic.Pointer[func()]
	pinMu      sync.Mutex
	pins       []journal.Seq // journal records kept for a reader other than the shipper

	cancel context.CancelFunc
	wg     sync.WaitGroup
	m      *metrics
}

// StartInfo tells what Open found and did.
type StartInfo struct {
	New         bool                 // the state directory was initialised now
	Unclean     bool                 // the last stop was not clean
	Recovery    journal.RecoveryInfo // what the journal's own recovery cut
	Replayed    int                  // journal records replayed into source files
	HotRegions  int                  // activity-log regions marked for resync
	ChangedBack int                  // files changed behind drfs's back, marked for resync
	// Unreplayable counts records skipped at replay by the operator's choice (SkipUnreplayable).
	Unreplayable int
}

// Open validates cfg, locks the state directory, recovers and returns a volume ready for
// mutations.
func Open(cfg Config) (_ *Volume, err error) {
	if cfg.RegionSize <= 0 {
		cfg.RegionSize = DefaultRegionSize
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.CheckpointBytes <= 0 {
		cfg.CheckpointBytes = DefaultCheckpointBytes
	}
	src, state, err := validatePaths(cfg)
	if err != nil {
		return nil, err
	}
	v := &Volume{cfg: cfg, src: src, srcFd: -1, log: logging.OrDiscard(cfg.Logger), m: newMetrics()}
	defer func() {
		if err != nil {
			v.closeFiles()
		}
	}()
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	if v.lock, err = lockState(state); err != nil {
		return nil, err
	}
	if v.srcFd, err = unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("open source %s: %w", src, err)
	}
	if v.meta, err = OpenMeta(filepath.Join(state, "meta")); err != nil {
		return nil, err
	}
	if err := v.identify(cfg.Name); err != nil {
		return nil, err
	}
	v.log = v.log.With("volume", v.name)
	if role, err := v.meta.Role(); err != nil {
		return nil, err
	} else if role != nil && !cfg.allowDemoted {
		return nil, fmt.Errorf("%w: %s (%s, generation %d took over at seq %d); this state cannot be mounted as a primary any more: run `drfs reverse` to make this site a replica of the new primary", ErrDemoted, role.Reason, role.Time.Format(time.RFC3339), role.Generation, role.Seq)
	}
	if h, err := v.meta.HandOver(); err != nil {
		return nil, err
	} else if h != nil {
		// A planned failover asked the replica to promote and its outcome is unknown: this side
		// comes up refusing writes until the shipper (or drfs failover --resolve) learns it.
		reason := fmt.Sprintf("planned failover %s to %s (generation %d at seq %d, %s) is in doubt", h.Key, h.Replica, h.Generation+1, h.Seq, h.Time.Format(time.RFC3339))
		v.fenced.Store(&reason)
		v.log.Warn("planned failover is in doubt: the volume refuses writes until it is resolved",
			"failover", h.Key, "replica", h.Replica, "generation", h.Generation+1, "seq", h.Seq, "time", h.Time)
	}
	ck, err := v.meta.Checkpoint()
	if err != nil {
		return nil, err
	}
	// A promoted replica's state starts its journal after the seq it was promoted at. A
	// journal that vanished after an unclean stop is not that: its records after the
	// checkpoint are gone, and saying nothing would let the replica silently diverge.
	jdir := filepath.Join(state, "journal")
	if segs, _ := filepath.Glob(filepath.Join(jdir, "*.seg")); len(segs) == 0 && !v.start.New {
		if running, _ := v.meta.Running(); running {
			return nil, fmt.Errorf("the journal in %s is missing or empty, but drfs did not stop cleanly: the records after checkpoint seq %d are lost; restore the journal, or start over with a new state dir and a full resync", jdir, ck)
		}
	}
	if v.j, err = journal.Open(filepath.Join(state, "journal"), journal.Options{SegmentSize: cfg.SegmentSize, Logger: v.log, FirstSeq: journal.Seq(ck + 1)}); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	v.start.Recovery = v.j.Recovery()
	if err := v.recover(); err != nil {
		return nil, err
	}
	if err := v.meta.SetRunning(true); err != nil {
		return nil, fmt.Errorf("mark running: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	v.wg.Add(1)
	go v.background(ctx)
	return v, nil
}

// validatePaths resolves the configured directories and refuses layouts that would make drfs
// journal its own state or recurse through its own mount.
func validatePaths(cfg Config) (src, state string, err error) {
	if cfg.Source == "" || cfg.State == "" {
		return "", "", errors.New("both a source and a state directory are required")
	}
	st, err := os.Stat(cfg.Source)
	if err != nil {
		return "", "", fmt.Errorf("source %s: %w", cfg.Source, err)
	}
	if !st.IsDir() {
		return "", "", fmt.Errorf("source %s is not a directory", cfg.Source)
	}
	if src, err = realPath(cfg.Source); err != nil {
		return "", "", err
	}
	if state, err = realPath(cfg.State); err != nil {
		return "", "", err
	}
	if within(state, src) {
		return "", "", fmt.Errorf("state dir %s is inside the source %s: drfs would journal its own journal", state, src)
	}
	if within(src, state) {
		return "", "", fmt.Errorf("source %s is inside the state dir %s", src, state)
	}
	if cfg.Mountpoint != "" {
		mnt, err := realPath(cfg.Mountpoint)
		if err != nil {
			return "", "", err
		}
		if within(mnt, src) {
			return "", "", fmt.Errorf("mountpoint %s is the source or inside it (%s): mount drfs on another directory and point the hypervisor there", mnt, src)
		}
		if within(state, mnt) {
			return "", "", fmt.Errorf("state dir %s is inside the mountpoint %s", state, mnt)
		}
		if within(src, mnt) {
			return "", "", fmt.Errorf("source %s is inside the mountpoint %s", src, mnt)
		}
	}
	return src, state, nil
}

// realPath returns p absolute with symlinks resolved; a missing tail is kept as is, so a state
// directory that does not exist yet can be checked too.
func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; cur = filepath.Dir(cur) {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest), nil
		}
		if cur == "/" {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
	}
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/") || dir == "/"
}

func lockState(state string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(state, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(f.Name())
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is used by a running drfs (pid %s)", ErrLocked, state, strings.TrimSpace(string(pid)))
		}
		return nil, fmt.Errorf("lock %s: %w", state, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// identify loads the volume identity or creates it on first use, and refuses a state directory
// that belongs to another volume.
func (v *Volume) identify(name string) error {
	id, err := v.meta.String(keyVolumeID)
	if err != nil {
		return err
	}
	if name == "" {
		name = filepath.Base(v.src)
	}
	if id == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id = hex.EncodeToString(b[:])
		for k, val := range map[string]string{keyVolumeName: name, keySource: v.src, keyVolumeID: id} {
			if err := v.meta.set(k, []byte(val)); err != nil {
				return fmt.Errorf("record volume identity: %w", err)
			}
		}
		v.start.New = true
	} else {
		have, _ := v.meta.String(keyVolumeName)
		haveSrc, _ := v.meta.String(keySource)
		if v.cfg.Name != "" && have != v.cfg.Name {
			return fmt.Errorf("state dir belongs to volume %q (source %s), not %q", have, haveSrc, v.cfg.Name)
		}
		if haveSrc != v.src {
			return fmt.Errorf("state dir belongs to volume %q with source %s, not %s; use a new state dir for a new volume", have, haveSrc, v.src)
		}
		name = have
	}
	v.id, v.name = id, name
	return nil
}

// ID returns the volume's unique ID.
func (v *Volume) ID() string { return v.id }

// Name returns the volume's name.
func (v *Volume) Name() string { return v.name }

// Source returns the resolved source directory.
func (v *Volume) Source() string { return v.src }

// Journal exposes the journal to the shipper.
func (v *Volume) Journal() *journal.Journal { return v.j }

// Meta exposes the metadata store.
func (v *Volume) Meta() *Meta { return v.meta }

// Start tells what Open found.
func (v *Volume) Start() StartInfo { return v.start }

// CheckpointSeq returns the last checkpoint.
func (v *Volume) CheckpointSeq() uint64 { return v.ckSeq.Load() }

// SetRetention installs fn, which returns the first seq a consumer (the shipper) still needs
// (0: none); journal segments at or after it are kept even when checkpointed. Until it is
// called, a volume that replicates (KeyReplica recorded) keeps the records after the last seq
// the shipper recorded as shipped (KeyShipNext).
func (v *Volume) SetRetention(fn func() journal.Seq) { v.retainFrom.Store(&fn) }

func (v *Volume) background(ctx context.Context) {
	defer v.wg.Done()
	interval := v.cfg.CheckpointInterval
	if interval < 0 {
		interval = time.Hour
	}
	tick := time.NewTicker(min(interval, 5*time.Second))
	defer tick.Stop()
	gc := time.NewTicker(10 * time.Minute)
	defer gc.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-gc.C:
			v.meta.RunGC()
		case <-tick.C:
			due := v.cfg.CheckpointInterval > 0 && time.Since(last) >= v.cfg.CheckpointInterval
			if v.appended.Load()-v.ckJournal.Load() >= v.cfg.CheckpointBytes {
				due = true
			}
			if !due || v.j.LastSeq() == journal.Seq(v.ckSeq.Load()) {
				continue
			}
			if err := v.Checkpoint(); err != nil {
				v.log.Warn("checkpoint", logging.Err(err))
			}
			last = time.Now()
		}
	}
}

// Checkpoint makes every journaled mutation durable in the source files, records the
// checkpoint seq, starts a new activity-log epoch and releases journal segments nobody needs.
func (v *Volume) Checkpoint() error { return v.checkpoint(nil) }

// checkpoint is Checkpoint with the file table already scanned (nil: scan it now). Recovery
// passes the scan it made when nothing was replayed, so a mount walks the tree once.
func (v *Volume) checkpoint(files map[string]FileStat) error {
	v.ckMu.Lock()
	defer v.ckMu.Unlock()
	t0 := time.Now()
	// Barrier: with opLock held exclusively no mutation is between its journal append and its
	// backing syscall, so every record <= seq has reached a source file.
	v.opLock.Lock()
	seq := v.j.LastSeq()
	old := v.hot.Load()
	next := newHotEpoch()
	v.hot.Store(next)
	appended := v.appended.Load()
	v.opLock.Unlock()

	// Every file written since the last checkpoint, and nothing else: syncfs would be ignored
	// by a FUSE-backed source and would flush other tenants' data on a shared one. Namespace
	// and attribute changes were made durable when they happened (Record).
	if old != nil {
		if err := old.files.Sync(&next.files); err != nil {
			return fmt.Errorf("sync source files: %w", err)
		}
	}
	// The journal may sit on another disk: a checkpoint seq beyond what the journal made
	// durable would, after a power loss, point past the journal's end.
	if err := v.j.Sync(seq); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	if files == nil {
		var err error
		if files, err = walkSource(v.src); err != nil {
			return fmt.Errorf("scan source: %w", err)
		}
	}
	if err := v.meta.ReplaceFiles(files); err != nil {
		return fmt.Errorf("record file table: %w", err)
	}
	if err := v.meta.SetCheckpoint(uint64(seq)); err != nil {
		return fmt.Errorf("record checkpoint: %w", err)
	}
	v.ckSeq.Store(uint64(seq))
	v.ckJournal.Store(appended)
	if err := v.release(); err != nil {
		v.log.Warn("release journal", logging.Err(err))
	}
	v.m.checkpointSeq.Set(float64(seq))
	v.m.checkpointDur.Observe(time.Since(t0).Seconds())
	return nil
}

// release drops journal segments that are both checkpointed and no longer needed by a consumer.
func (v *Volume) release() error {
	upTo := journal.Seq(v.ckSeq.Load())
	var need journal.Seq
	if fn := v.retainFrom.Load(); fn != nil {
		need = (*fn)()
	} else if r, _ := v.meta.String(KeyReplica); r != "" {
		// No consumer attached yet (recovery runs before the shipper starts): keep what
		// the replica has not acknowledged, as the shipper last recorded it.
		next, _ := v.meta.Uint(KeyShipNext)
		need = journal.Seq(next + 1)
	}
	if need > 0 && need-1 < upTo {
		upTo = need - 1
	}
	v.pinMu.Lock()
	for _, p := range v.pins {
		if p > 0 && p-1 < upTo {
			upTo = p - 1
		}
	}
	v.pinMu.Unlock()
	if upTo == 0 {
		return nil
	}
	return v.j.Release(upTo)
}

// Sync makes every record appended so far durable (group-committed with concurrent callers).
func (v *Volume) Sync() error {
	return v.j.Sync(v.j.LastSeq())
}

// Close checkpoints, records a clean stop and releases everything.
func (v *Volume) Close() error {
	if v.closed.Swap(true) {
		return nil
	}
	if v.cancel != nil {
		v.cancel()
		v.wg.Wait()
	}
	var errs []error
	if err := v.Checkpoint(); err != nil {
		errs = append(errs, err)
	} else if err := v.meta.SetRunning(false); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, v.closeFiles())
	return errors.Join(errs...)
}

func (v *Volume) closeFiles() error {
	var errs []error
	if ep := v.hot.Load(); ep != nil {
		ep.files.Close()
	}
	if v.j != nil {
		errs = append(errs, v.j.Close())
		v.j = nil
	}
	if v.meta != nil {
		errs = append(errs, v.meta.Close())
		v.meta = nil
	}
	if v.srcFd >= 0 {
		unix.Close(v.srcFd)
		v.srcFd = -1
	}
	if v.lock != nil {
		v.lock.Close()
		v.lock = nil
	}
	return errors.Join(errs...)
}

// walkSource returns the stat of every regular file, directory and symlink below src, by path
// relative to src.
func walkSource(src string) (map[string]FileStat, error) {
	out := map[string]FileStat{}
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		rel, _ := filepath.Rel(src, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, syscall.ENOENT) {
				return nil
			}
			return err
		}
		out[rel] = FileStat{
			Ino:   st.Ino,
			Size:  st.Size,
			Mtime: st.Mtim.Nano(),
			Ctime: st.Ctim.Nano(),
			Mode:  st.Mode,
		}
		return nil
	})
	return out, err
}

// StateDir returns the resolved state directory.
func (v *Volume) StateDir() string { return filepath.Dir(v.lock.Name()) }

// Barrier returns a seq such that every record up to it has reached the source files: a
// resync that reads the source after Barrier sees at least the state at that seq.
func (v *Volume) Barrier() journal.Seq {
	v.opLock.Lock()
	defer v.opLock.Unlock()
	return v.j.LastSeq()
}

// AppendedBytes returns the journal bytes appended since Open (data and metadata records).
func (v *Volume) AppendedBytes() int64 { return v.appended.Load() }

// Generation returns the volume's current generation (1 until a promotion changes it).
func (v *Volume) Generation() uint64 {
	g, _ := v.meta.Uint(keyGeneration)
	return max(g, 1)
}

// ResyncPending reports whether extents wait for resync.
func (v *Volume) ResyncPending() bool {
	exts, err := v.meta.Resync()
	return err == nil && len(exts) > 0
}

// ReleaseJournal drops journal segments that are checkpointed and no longer retained.
func (v *Volume) ReleaseJournal() {
	if err := v.release(); err != nil {
		v.log.Warn("release journal", logging.Err(err))
	}
}

// Pin keeps journal records from seq on until unpin is called (a seed export reads them after
// copying the tree).
func (v *Volume) Pin(seq journal.Seq) (unpin func()) {
	v.pinMu.Lock()
	defer v.pinMu.Unlock()
	v.pins = append(v.pins, seq)
	return func() {
		v.pinMu.Lock()
		defer v.pinMu.Unlock()
		for i, p := range v.pins {
			if p == seq {
				v.pins = append(v.pins[:i], v.pins[i+1:]...)
				break
			}
		}
	}
}
