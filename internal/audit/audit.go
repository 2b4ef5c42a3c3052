// Package audit keeps the append-only record of every failover action on a volume: who did
// what, when, from which host, from which generation to which, at which recovery point.
package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"time"
)

// FileName is the audit log's name inside a state directory.
const FileName = "audit.log"

// Entry is one audited action.
type Entry struct {
	Time      time.Time `json:"time"`
	Host      string    `json:"host"`
	User      string    `json:"user"`
	Action    string    `json:"action"` // promote, demote, reverse, failover, test-failover, ...
	Volume    string    `json:"volume"`
	VolumeID  string    `json:"volume_id"`
	GenBefore uint64    `json:"generation_before"`
	GenAfter  uint64    `json:"generation_after"`
	Point     uint64    `json:"point_seq"`
	Forced    bool      `json:"forced,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// Who fills in Time, Host and User from this process.
func (e Entry) Who() Entry {
	e.Time = time.Now().UTC()
	e.Host, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		e.User = u.Username
	} else {
		e.User = strconv.Itoa(os.Getuid())
	}
	if sudo := os.Getenv("SUDO_USER"); sudo != "" {
		e.User += " (sudo by " + sudo + ")"
	}
	return e
}

// Append durably adds e to the audit log at path.
func Append(path string, e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write audit log: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync audit log: %w", err)
	}
	return f.Close()
}

// Read returns the entries of the audit log at path (none if it does not exist).
func Read(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
