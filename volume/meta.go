package volume

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"drfs/internal/fsutil"
	"drfs/wire"
)

// Keys of the metadata store (volume/doc.go describes each). Values are JSON unless noted; the
// store is small (one record per file and per resync extent), so readability wins over
// compactness. Integers are 8-byte big-endian (Meta.Uint, Meta.SetUint); an absent integer
// key reads as 0. These names are part of the state directory's format.
const (
	keyVolumeID   = "volume/id"         // string: 16 hex digits, the same on every side
	keyVolumeName = "volume/name"       // string
	keySource     = "volume/source"     // string: absolute source path the state belongs to
	keyCheckpoint = "volume/checkpoint" // integer: every record <= it is durable in the source
	keyRunning    = "volume/running"    // RFC 3339 time: present while mounted, left by an unclean stop
	keyGeneration = "volume/generation" // integer; 1 when absent
	keyHistory    = "volume/history"    // JSON []GenRecord; absent for a volume never promoted
	keyRole       = "volume/role"       // JSON RoleRecord; absent for an ordinary primary
	keyHandOver   = "volume/handover"   // JSON HandOver; present while a planned failover's outcome is open

	// KeyHandOverSeen (string) is where the shipper records the last hand-over request of the
	// replica it acted on, so a request is run at most once.
	KeyHandOverSeen = "volume/handover-seen"
	// KeyShipNext (integer) is where the shipper records the last seq the replica acknowledged
	// (or that a pending resync covers): shipping resumes at KeyShipNext+1 and the journal is
	// kept from there.
	KeyShipNext = "ship/next"
	// KeyReplica (string) is where the shipper records the replica it ships to: an address,
	// or the directory of an export.
	KeyReplica = "ship/replica"
	// KeyShipSyncSeq (integer) is seq+1 while a full resync is pending: once the pending
	// extents are resynced, the replica is declared consistent at seq. 0 or absent: none.
	KeyShipSyncSeq = "ship/sync_seq"
	// KeyShipSyncBusy (integer) is 1 from the start of a resync pass until the replica has
	// acknowledged its completion, so an interrupted pass is completed after a restart even
	// when no extent is left pending. 0 or absent: no pass in progress.
	KeyShipSyncBusy = "ship/sync_busy"

	prefixFile   = "file/"   // file/<path> -> JSON FileStat, replaced at every checkpoint
	prefixResync = "resync/" // resync/<path>\x00<off as %016x> -> JSON Extent
)

// FileStat is what drfs recorded about a source file when it last knew the file's content was
// exactly what the journal says. A different size, mtime or ctime at mount means someone changed
// the file behind drfs's back.
type FileStat struct {
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
	Ctime int64  `json:"ctime_ns"`
	Mode  uint32 `json:"mode"`
}

// Extent is a byte range of a file that must be compared with the replica and resent where it
// differs (see wire.Extent).
type Extent = wire.Extent

// Meta is the volume's metadata store: a badger database opened with synchronous writes, so a
// returned Set is durable.
type Meta struct {
	db *badger.DB
}

// OpenMeta opens (creating if needed) the badger database in dir.
func OpenMeta(dir string) (*Meta, error) {
	if err := removeEmptyLogs(dir); err != nil {
		return nil, fmt.Errorf("open metadata %s: %w", dir, err)
	}
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(nil).
		WithNumVersionsToKeep(1).
		WithValueLogFileSize(64 << 20).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(8 << 20)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open metadata %s: %w", dir, err)
	}
	return &Meta{db: db}, nil
}

// removeEmptyLogs deletes empty memtable (.mem) and value-log (.vlog) files of the badger
// database in dir. A power loss between the creation of such a file and its first write leaves
// it empty (it holds no entry, the write that would have filled it never returned); badger
// refuses to open a directory holding one (dgraph-io/badger#2207), which would keep the volume
// from mounting after the crash.
func removeEmptyLogs(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	removed := false
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); ext != ".mem" && ext != ".vlog" {
			continue
		}
		if fi, err := e.Info(); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
		removed = true
	}
	if removed {
		return fsutil.SyncDir(dir)
	}
	return nil
}

// Close closes the database.
func (m *Meta) Close() error { return m.db.Close() }

// RunGC runs one round of value-log garbage collection; badger needs it called periodically.
func (m *Meta) RunGC() {
	for m.db.RunValueLogGC(0.5) == nil {
	}
}

func (m *Meta) get(key string) ([]byte, error) {
	var val []byte
	err := m.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		val, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	return val, err
}

func (m *Meta) set(key string, val []byte) error {
	return m.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), val) })
}

func (m *Meta) del(key string) error {
	return m.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(key)) })
}

// String returns a string value, "" when absent.
func (m *Meta) String(key string) (string, error) {
	v, err := m.get(key)
	return string(v), err
}

// Checkpoint returns the last checkpoint seq (0 if none).
func (m *Meta) Checkpoint() (uint64, error) {
	v, err := m.get(keyCheckpoint)
	if err != nil || len(v) != 8 {
		return 0, err
	}
	return binary.BigEndian.Uint64(v), nil
}

// SetCheckpoint records seq as checkpointed: every record <= seq is durable in the source files.
func (m *Meta) SetCheckpoint(seq uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return m.set(keyCheckpoint, b[:])
}

// Running reports whether the running marker is present, i.e. the last stop was not clean.
func (m *Meta) Running() (bool, error) {
	v, err := m.get(keyRunning)
	return v != nil, err
}

// SetRunning sets or clears the running marker.
func (m *Meta) SetRunning(on bool) error {
	if on {
		return m.set(keyRunning, []byte(time.Now().UTC().Format(time.RFC3339)))
	}
	return m.del(keyRunning)
}

// Files returns every recorded FileStat by path.
func (m *Meta) Files() (map[string]FileStat, error) {
	out := map[string]FileStat{}
	err := m.scan(prefixFile, func(k string, v []byte) error {
		var st FileStat
		if err := json.Unmarshal(v, &st); err != nil {
			return fmt.Errorf("decode %s: %w", k, err)
		}
		out[strings.TrimPrefix(k, prefixFile)] = st
		return nil
	})
	return out, err
}

// ReplaceFiles atomically replaces the recorded file table.
func (m *Meta) ReplaceFiles(files map[string]FileStat) error {
	if err := m.dropPrefix(prefixFile); err != nil {
		return err
	}
	wb := m.db.NewWriteBatch()
	defer wb.Cancel()
	for p, st := range files {
		b, _ := json.Marshal(st)
		if err := wb.Set([]byte(prefixFile+p), b); err != nil {
			return err
		}
	}
	return wb.Flush()
}

func resyncKey(e Extent) string {
	return fmt.Sprintf("%s%s\x00%016x", prefixResync, e.Path, uint64(e.Off))
}

// AddResync records extents that must be resynced with the replica. An extent for the same
// path and offset is replaced (the longer one wins).
func (m *Meta) AddResync(exts []Extent) error {
	if len(exts) == 0 {
		return nil
	}
	return m.db.Update(func(txn *badger.Txn) error {
		for _, e := range exts {
			if e.Since.IsZero() {
				e.Since = time.Now().UTC()
			}
			k := []byte(resyncKey(e))
			if it, err := txn.Get(k); err == nil {
				var old Extent
				if err := it.Value(func(v []byte) error { return json.Unmarshal(v, &old) }); err == nil {
					if old.Len < 0 || (e.Len >= 0 && old.Len >= e.Len) {
						continue
					}
				}
			}
			b, _ := json.Marshal(e)
			if err := txn.Set(k, b); err != nil {
				return err
			}
		}
		return nil
	})
}

// Resync returns every extent waiting for resync, ordered by path and offset.
func (m *Meta) Resync() ([]Extent, error) {
	var out []Extent
	err := m.scan(prefixResync, func(k string, v []byte) error {
		var e Extent
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode %q: %w", k, err)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// ClearResync removes the given extents (after they were resynced).
func (m *Meta) ClearResync(exts []Extent) error {
	return m.db.Update(func(txn *badger.Txn) error {
		for _, e := range exts {
			if err := txn.Delete([]byte(resyncKey(e))); err != nil {
				return err
			}
		}
		return nil
	})
}

func (m *Meta) scan(prefix string, fn func(k string, v []byte) error) error {
	return m.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(string(item.Key()), v); err != nil {
				return err
			}
		}
		return nil
	})
}

func (m *Meta) dropPrefix(prefix string) error {
	return m.db.DropPrefix([]byte(prefix))
}

// Uint returns an integer value stored under key (0 when absent).
func (m *Meta) Uint(key string) (uint64, error) {
	v, err := m.get(key)
	if err != nil || len(v) != 8 {
		return 0, err
	}
	return binary.BigEndian.Uint64(v), nil
}

// SetUint durably stores an integer value under key.
func (m *Meta) SetUint(key string, val uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], val)
	return m.set(key, b[:])
}

// SetString durably stores a string value under key.
func (m *Meta) SetString(key, val string) error { return m.set(key, []byte(val)) }
