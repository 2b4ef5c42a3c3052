package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"drfs/changelog"
	"drfs/journal"
)

// A primary gone bad (ransomware on the primary host, speaking the replication protocol
// directly) tries each request that could erase or rewrite the replica's past. drfs serve runs
// with --keep-points 2 --keep-for 1h; afterwards drfs points still lists the good points and
// promote --point restores the oldest one byte-exact.
func TestReplication_CompromisedPrimaryCannotEraseThePast(t *testing.T) {
	requireTools(t)
	r := startReplica(t, "", "")
	r.Stop()
	r.Extra = []string{"--keep-points", "2", "--keep-for", "1h"}
	r.Start()
	m := testMountWith(t, MountOptions{Volume: "past", Args: r.MountArgs("--interval", "continuous")})
	v1 := randBytes(50, 1<<20)
	mustWriteFile(t, filepath.Join(m.Mnt, "disk.raw"), v1, 0o644)
	mustWriteFile(t, filepath.Join(m.Mnt, "notes"), []byte("precious"), 0o600)
	s1 := m.Sync(time.Minute)
	f, err := os.OpenFile(filepath.Join(m.Mnt, "disk.raw"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(randBytes(51, 64<<10), 128<<10)
	f.Close()
	s2 := m.Sync(time.Minute)
	m.Stop()

	st := readReplicaState(t, r.Dir, "past")
	client := &http.Client{Timeout: 30 * time.Second}
	call := func(method, path string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+r.Addr+"/v1/volumes/past"+path, bytes.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		t.Logf("%s %s: HTTP %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
		return resp.StatusCode, string(b)
	}
	post := func(path string, v any) int {
		b, _ := json.Marshal(v)
		code, _ := call("POST", path, b)
		return code
	}
	applied := func() uint64 { return readReplicaState(t, r.Dir, "past").Applied }
	hdr := func(kind changelog.Kind) changelog.Header {
		h := changelog.Header{Kind: kind, VolumeID: st.VolumeID, Generation: st.Generation, ToSeq: applied(), Created: time.Now()}
		if kind == changelog.KindJournal {
			h.FromSeq, h.ToSeq = applied()+1, applied()+1
		}
		return h
	}
	zero := make([]byte, 64<<10)
	// A flood of tiny logs zeroing the image, far past --keep-points 2.
	for i := 0; i < 30; i++ {
		if code, _ := call("PUT", "/log", craftLog(t, hdr(changelog.KindJournal), []journal.Op{journal.OpWrite{Path: "disk.raw", Off: int64(i) << 16, Data: zero}})); code != http.StatusOK {
			t.Fatalf("flood log %d refused (HTTP %d): the test proves nothing", i, code)
		}
	}
	// A full resync that deletes and rewrites everything, completed at a later seq.
	post("/resync-begin", map[string]any{"volume_id": st.VolumeID, "generation": st.Generation})
	call("PUT", "/log", craftLog(t, hdr(changelog.KindResync), []journal.Op{journal.OpUnlink{Path: "notes"},
		journal.OpWrite{Path: "disk.raw", Data: bytes.Repeat([]byte("X"), 1<<20)}}))
	post("/sync-complete", map[string]any{"volume_id": st.VolumeID, "generation": st.Generation, "seq": applied() + 1000, "exact": true})
	// A reset: the applied seq set back over the points, in this and a new generation.
	for _, gen := range []uint64{st.Generation, st.Generation + 5} {
		if code := post("/sync-complete", map[string]any{"volume_id": st.VolumeID, "generation": gen, "seq": 0, "exact": true}); code == http.StatusOK {
			t.Errorf("sync-complete back to seq 0 (generation %d) was accepted", gen)
		}
	}
	// Planned promotions: one rolling back to the start, one discarding the points.
	zeroSeq := uint64(0)
	for _, o := range []map[string]any{
		{"Planned": true, "ExpectSeq": applied(), "Point": &zeroSeq},
		{"Planned": true, "ExpectSeq": applied()},
	} {
		if code := post("/promote", o); code == http.StatusOK {
			t.Errorf("promotion %v by the primary was accepted", o)
		}
	}

	listed := map[uint64]bool{}
	for _, p := range replicaPoints(t, r.Dir, "past") {
		listed[p.Seq] = true
	}
	for _, s := range []uint64{s1, s2} {
		if !listed[s] {
			t.Errorf("drfs points no longer lists point %d: %v", s, listed)
		}
	}
	out, err := drfsCmd(t, 2*time.Minute, "promote", "--dir", r.Dir, "--volume", "past", "--point", strconv.FormatUint(s1, 10), "--force")
	if err != nil {
		t.Fatalf("drfs promote --point %d: %v\n%s", s1, err, out)
	}
	data := r.DataDir("past")
	if got, _ := os.ReadFile(filepath.Join(data, "disk.raw")); !bytes.Equal(got, v1) {
		t.Errorf("disk.raw at point %d differs from what was written (%d bytes, want %d)", s1, len(got), len(v1))
	}
	if got, _ := os.ReadFile(filepath.Join(data, "notes")); string(got) != "precious" {
		t.Errorf("notes at point %d: %q", s1, got)
	}
}
