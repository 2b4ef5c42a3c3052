package replica

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"drfs/changelog"
	"drfs/internal/logtest"
	"drfs/journal"
	"drfs/wire"
)

// attacker is an authenticated primary gone bad: it speaks the replication protocol directly.
type attacker struct {
	t   *testing.T
	url string
	gen uint64
	vol string // the volume it attacks; "" is "vol"
}

func (a *attacker) do(method, path string, body []byte) (int, string) {
	a.t.Helper()
	vol := a.vol
	if vol == "" {
		vol = "vol"
	}
	req, _ := http.NewRequest(method, a.url+"/v1/volumes/"+vol+path, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func (a *attacker) post(path string, v any) (int, string) {
	b, _ := json.Marshal(v)
	return a.do("POST", path, b)
}

func (a *attacker) send(l *changelog.Log) (int, string) {
	a.t.Helper()
	b, _, err := changelog.Marshal(l)
	if err != nil {
		a.t.Fatal(err)
	}
	return a.do("PUT", "/log", b)
}

// pastFixture is a replica volume behind the primaries' HTTP handler, holding three good
// recovery points, with --keep-points 2 --keep-for 1h.
type pastFixture struct {
	v     *Volume
	a     *attacker
	id    string
	good  map[uint64]string // recovery point seq -> snapshot of the tree
	first uint64            // the state before the first log (an empty tree)
}

func newPastFixture(t *testing.T) *pastFixture {
	dir := t.TempDir()
	srv, err := NewServer(dir, Options{PreparePrimary: prepareStub, KeepPoints: 2, KeepFor: time.Hour, Logger: logtest.Logger(t)}, changelog.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	v, err := srv.Volume("vol")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.SyncComplete("vol-1", 1, 0, 0, true); err != nil {
		t.Fatal(err)
	}
	f := &pastFixture{v: v, a: &attacker{t: t, url: hs.URL, gen: 1}, id: "vol-1", good: map[uint64]string{}}
	mustApply(t, v, jlog(v, journal.OpCreate{Path: "disk.img", Mode: 0o100644}, journal.OpWrite{Path: "disk.img", Data: data('a', 256<<10)},
		journal.OpCreate{Path: "notes", Mode: 0o100600}, journal.OpWrite{Path: "notes", Data: []byte("precious")}))
	f.good[v.State().Applied] = snapshot(t, v.DataDir())
	mustApply(t, v, jlog(v, journal.OpWrite{Path: "disk.img", Off: 8192, Data: data('b', 8192)}))
	f.good[v.State().Applied] = snapshot(t, v.DataDir())
	mustApply(t, v, jlog(v, journal.OpMkdir{Path: "d", Mode: 0o40755}, journal.OpCreate{Path: "d/f", Mode: 0o100644}, journal.OpWrite{Path: "d/f", Data: []byte("f")}))
	f.good[v.State().Applied] = snapshot(t, v.DataDir())
	f.first = v.Points()[0].From - 1
	return f
}

// checkPast requires every good point to restore byte-exact in a test-failover clone.
func (f *pastFixture) checkPast(t *testing.T) {
	t.Helper()
	for seq, want := range f.good {
		dest := filepath.Join(t.TempDir(), "clone")
		if err := f.v.Clone(seq, dest); err != nil {
			t.Fatalf("point %d is gone: %v (points %+v)", seq, err, f.v.Points())
		}
		if got := snapshot(t, filepath.Join(dest, "data")); got != want {
			t.Fatalf("point %d restores\n%s\nwant\n%s", seq, got, want)
		}
	}
}

// A compromised primary tries every request it can make to erase or rewrite the replica's
// past; after each, the recovery points inside the replica operator's retention (--keep-for)
// still restore byte-exact, through a test-failover clone and then a promotion.
func TestReplica_CompromisedPrimaryCannotEraseThePast(t *testing.T) {
	mustOK := func(t *testing.T, what string, code int, body string) {
		t.Helper()
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", what, code, body)
		}
	}
	mustRefuse := func(t *testing.T, what string, code int, body string) {
		t.Helper()
		if code == http.StatusOK {
			t.Errorf("%s was accepted: %s", what, body)
		}
	}
	resync := func(f *pastFixture, ops ...journal.Op) *changelog.Log {
		return &changelog.Log{Header: changelog.Header{Kind: changelog.KindResync, VolumeID: f.id, Generation: 1, ToSeq: f.v.State().Applied, Created: time.Now().UTC()}, Ops: ops}
	}
	wipe := []journal.Op{journal.OpWrite{Path: "disk.img", Data: data('X', 256<<10)}, journal.OpUnlink{Path: "notes"}, journal.OpUnlink{Path: "d/f"}, journal.OpRmdir{Path: "d"}}
	for _, c := range []struct {
		name   string
		attack func(t *testing.T, f *pastFixture)
	}{
		{"flood of tiny logs past --keep-points", func(t *testing.T, f *pastFixture) {
			for i := 0; i < 40; i++ {
				code, body := f.a.send(jlog(f.v, journal.OpWrite{Path: "disk.img", Off: int64(i) * 4096, Data: data(0, 4096)}))
				mustOK(t, "flood log", code, body)
			}
		}},
		{"resync log rewriting everything", func(t *testing.T, f *pastFixture) {
			code, body := f.a.send(resync(f, wipe...))
			mustOK(t, "resync log", code, body)
		}},
		{"full resync to a later seq", func(t *testing.T, f *pastFixture) {
			code, body := f.a.post("/resync-begin", map[string]any{"volume_id": f.id, "generation": 1})
			mustOK(t, "resync-begin", code, body)
			code, body = f.a.send(resync(f, wipe...))
			mustOK(t, "resync log", code, body)
			code, body = f.a.send(resync(f, journal.OpCreate{Path: "ransom.txt", Mode: 0o100644}, journal.OpWrite{Path: "ransom.txt", Data: []byte("pay")}))
			mustOK(t, "resync log", code, body)
			code, body = f.a.post("/sync-complete", map[string]any{"volume_id": f.id, "generation": 1, "seq": f.v.State().Applied + 100, "exact": true})
			mustOK(t, "sync-complete", code, body)
			// and the journal goes on after it
			code, body = f.a.send(jlog(f.v, journal.OpWrite{Path: "ransom.txt", Data: []byte("PAY")}))
			mustOK(t, "log after the resync", code, body)
		}},
		{"repair resync completing at the applied seq", func(t *testing.T, f *pastFixture) {
			code, body := f.a.send(resync(f, wipe...))
			mustOK(t, "resync log", code, body)
			code, body = f.a.post("/sync-complete", map[string]any{"volume_id": f.id, "generation": 1, "seq": f.v.State().Applied})
			mustOK(t, "sync-complete", code, body)
		}},
		{"sync-complete back to seq 1", func(t *testing.T, f *pastFixture) {
			code, body := f.a.post("/sync-complete", map[string]any{"volume_id": f.id, "generation": 1, "seq": 1, "exact": true})
			mustRefuse(t, "sync-complete back to seq 1", code, body)
		}},
		{"sync-complete of a new generation at seq 0", func(t *testing.T, f *pastFixture) {
			code, body := f.a.post("/sync-complete", map[string]any{"volume_id": f.id, "generation": 7, "seq": 0, "exact": true})
			mustRefuse(t, "sync-complete of generation 7 at seq 0", code, body)
		}},
		{"planned promotion rolling back", func(t *testing.T, f *pastFixture) {
			code, body := f.a.post("/promote", wire.PromoteOptions{Planned: true, ExpectSeq: f.v.State().Applied, Point: &f.first})
			mustRefuse(t, "planned promotion to the first point", code, body)
			code, body = f.a.post("/promote", wire.PromoteOptions{Planned: true, ExpectSeq: f.v.State().Applied, Time: &time.Time{}})
			mustRefuse(t, "planned promotion to time 0", code, body)
		}},
		{"planned promotion dropping the points", func(t *testing.T, f *pastFixture) {
			code, body := f.a.post("/promote", wire.PromoteOptions{Planned: true, ExpectSeq: f.v.State().Applied})
			mustRefuse(t, "planned promotion", code, body)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newPastFixture(t)
			f.checkPast(t)
			c.attack(t, f)
			f.checkPast(t)
			if st := f.v.State(); st.Role == "promoted" {
				t.Fatalf("a primary promoted the replica on its own: %+v", st)
			}
			// The replica's operator rolls back to the oldest good state and promotes it.
			oldest := ^uint64(0)
			for seq := range f.good {
				oldest = min(oldest, seq)
			}
			if _, err := f.v.Promote(wire.PromoteOptions{Point: &oldest, Force: true}); err != nil {
				t.Fatalf("promote --point %d: %v", oldest, err)
			}
			if got := snapshot(t, f.v.DataDir()); got != f.good[oldest] {
				t.Fatalf("promoted to point %d:\n%s\nwant\n%s", oldest, got, f.good[oldest])
			}
		})
	}
}

// The replica's operator can still hand a volume over to a primary: a planned promotion is
// accepted once drfs promote on the replica host asked for it, or when no point is inside
// the retention.
func TestReplica_PlannedPromotionNeedsOperatorWhilePointsAreRetained(t *testing.T) {
	for _, c := range []struct {
		name    string
		keepFor time.Duration
		ask     bool
		ok      bool
	}{
		{"retained points, no request", time.Hour, false, false},
		{"retained points, operator asked", time.Hour, true, true},
		{"no time retention", 0, false, true},
		{"operator asked for an older point", time.Hour, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := OpenVolume(t.TempDir(), "vol", Options{PreparePrimary: prepareStub, KeepPoints: 5, KeepFor: c.keepFor, Logger: logtest.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { v.Close() })
			if err := v.SyncComplete("vol-1", 1, 0, 0, true); err != nil {
				t.Fatal(err)
			}
			mustApply(t, v, jlog(v, journal.OpCreate{Path: "f", Mode: 0o100644}))
			mustApply(t, v, jlog(v, journal.OpWrite{Path: "f", Data: []byte("x")}))
			if c.ask {
				v.Touch()
				o := wire.PromoteOptions{}
				if c.name == "operator asked for an older point" {
					first := v.Points()[0].From - 1
					o.Point = &first
				}
				if _, err := v.Promote(o); err == nil {
					t.Fatal("promotion over a primary in contact did not ask it to hand over")
				}
			}
			_, err = v.Promote(wire.PromoteOptions{Planned: true, ExpectSeq: v.State().Applied})
			if c.ok != (err == nil) {
				t.Fatalf("planned promotion: %v, want ok=%v", err, c.ok)
			}
		})
	}
}

// Resync logs share the From of the log after them; pruning drops such a run whole or not at
// all, so rolling back to the run's point never stops half-way through a resync.
func TestReplica_PruneKeepsResyncRunsWhole(t *testing.T) {
	v, err := OpenVolume(t.TempDir(), "vol", Options{PreparePrimary: prepareStub, KeepPoints: 1, Logger: logtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	mustApply(t, v, jlog(v, journal.OpCreate{Path: "f", Mode: 0o100644}, journal.OpWrite{Path: "f", Data: data('a', 64<<10)}))
	mustApply(t, v, jlog(v, journal.OpWrite{Path: "f", Data: []byte("b")}))
	at := v.State().Applied
	want := snapshot(t, v.DataDir())
	for i := 0; i < 3; i++ {
		mustApply(t, v, &changelog.Log{Header: changelog.Header{Kind: changelog.KindResync, VolumeID: "vol-1", Generation: 1, ToSeq: at, Created: time.Now().UTC()},
			Ops: []journal.Op{journal.OpWrite{Path: "f", Off: int64(i) * 4096, Data: data('r', 4096)}}})
	}
	mustApply(t, v, jlog(v, journal.OpWrite{Path: "f", Data: []byte("c")}))
	if n := len(v.Points()); n != 4 {
		t.Fatalf("%d points kept, want the resync run of 3 and the log after it: %+v", n, v.Points())
	}
	if err := v.RollbackTo(at); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, v.DataDir()); got != want {
		t.Fatalf("rolled back to %d:\n%s\nwant\n%s", at, got, want)
	}
}

// TestReplica_PointAtUsesReplicaClock: a compromised primary stamps the logs it sends after an
// attack with old times; promote --time T must still pick the state the replica held at T by
// its own clock, not a later state that claims to be older.
func TestReplica_PointAtUsesReplicaClock(t *testing.T) {
	v := MustOpenVolume(t, t.TempDir())
	mustApply(t, v, jlog(v, journal.OpCreate{Path: "disk", Mode: 0o100644, Ino: 1},
		journal.OpWrite{Path: "disk", Ino: 1, Off: 0, Data: []byte("good data")}))
	mustApply(t, v, jlog(v, journal.OpWrite{Path: "disk", Ino: 1, Off: 0, Data: []byte("more good")}))
	good := v.State().Applied
	time.Sleep(20 * time.Millisecond)
	attack := time.Now()
	time.Sleep(20 * time.Millisecond)
	l := jlog(v, journal.OpWrite{Path: "disk", Ino: 1, Off: 0, Data: []byte("ENCRYPTED")})
	l.Created = attack.Add(-time.Hour) // lies about when it was cut
	mustApply(t, v, l)
	if got := v.pointAt(attack); got != good {
		t.Fatalf("pointAt(before the attack) = seq %d, want %d (the state the replica held then); applied %d", got, good, v.State().Applied)
	}
}

// TestReplica_KeepForProtectsYoungPoints: past --keep-points, points older than --keep-for are
// pruned, oldest first, and no point younger than --keep-for is, however many there are.
func TestReplica_KeepForProtectsYoungPoints(t *testing.T) {
	dir := t.TempDir()
	v, err := OpenVolume(dir, "vol", Options{KeepPoints: 2, KeepFor: time.Hour, Logger: logtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	mustApply(t, v, jlog(v, journal.OpCreate{Path: "f", Mode: 0o100644}))
	for i := range 5 {
		mustApply(t, v, jlog(v, journal.OpWrite{Path: "f", Off: int64(i), Data: []byte{byte(i)}}))
	}
	if n := len(v.Points()); n != 6 {
		t.Fatalf("%d points kept, want all 6 (younger than --keep-for)", n)
	}
	// The three oldest points age past --keep-for.
	v.mu.Lock()
	for i := range 3 {
		v.st.Points[i].Applied = time.Now().Add(-2 * time.Hour)
	}
	v.mu.Unlock()
	before := v.Points()
	mustApply(t, v, jlog(v, journal.OpWrite{Path: "f", Off: 9, Data: []byte{9}}))
	ps := v.Points()
	if len(ps) != 4 || ps[0].From != before[3].From {
		t.Fatalf("points %+v, want the 4 young ones from seq %d", ps, before[3].From)
	}
	undo, _ := os.ReadDir(filepath.Join(dir, "vol", "state", "undo"))
	if len(undo) != 4 {
		t.Fatalf("%d undo files, want 4", len(undo))
	}
	if err := v.RollbackTo(before[3].From - 1); err != nil {
		t.Fatalf("roll back to the oldest kept point: %v", err)
	}
	if err := v.RollbackTo(before[2].From - 1); err == nil {
		t.Fatal("rolled back to a pruned point")
	}
}

// retentionServer serves a fresh replica directory whose volumes get their retention from
// retention, and returns it with the URL of its primaries' handler.
func retentionServer(t *testing.T, retention func(string) (int, time.Duration)) (*Server, string) {
	t.Helper()
	srv, err := NewServer(t.TempDir(), Options{PreparePrimary: prepareStub, KeepPoints: 3, Retention: retention, Logger: logtest.Logger(t)}, changelog.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return srv, hs.URL
}

// flood sends n tiny journal logs to volume v through the primaries' handler, as a primary
// does (or one gone bad), and requires every one to be applied.
func flood(t *testing.T, a *attacker, v *Volume, n int) {
	t.Helper()
	if len(v.Points()) == 0 && v.State().Applied == 0 {
		if code, body := a.send(jlog(v, journal.OpCreate{Path: "disk.img", Mode: 0o100644})); code != http.StatusOK {
			t.Fatalf("first log: %d %s", code, body)
		}
		n--
	}
	for i := 0; i < n; i++ {
		if code, body := a.send(jlog(v, journal.OpWrite{Path: "disk.img", Off: int64(i) * 512, Data: data(byte(i), 512)})); code != http.StatusOK {
			t.Fatalf("log %d: %d %s", i, code, body)
		}
	}
}

// TestServer_RetentionPerVolume: each volume gets the retention its operator set for it
// (Options.Retention): a volume kept for a week keeps every point of a flood of logs, one
// kept by count only prunes to its count, and a volume without its own gets the default.
func TestServer_RetentionPerVolume(t *testing.T) {
	own := map[string]struct {
		n int
		d time.Duration
	}{"erp": {2, 168 * time.Hour}, "build": {2, 0}}
	srv, url := retentionServer(t, func(name string) (int, time.Duration) {
		if r, ok := own[name]; ok {
			return r.n, r.d
		}
		return 3, 0
	})
	for _, c := range []struct {
		volume      string
		wantKeep    int
		wantKeepFor time.Duration
		wantPoints  int
	}{
		{"erp", 2, 168 * time.Hour, 12},
		{"build", 2, 0, 2},
		{"other", 3, 0, 3},
	} {
		t.Run(c.volume, func(t *testing.T) {
			v, err := srv.Volume(c.volume)
			if err != nil {
				t.Fatal(err)
			}
			if n, d := v.Retention(); n != c.wantKeep || d != c.wantKeepFor {
				t.Errorf("retention %d, %s; want %d, %s", n, d, c.wantKeep, c.wantKeepFor)
			}
			flood(t, &attacker{t: t, url: url, gen: 1, vol: c.volume}, v, 12)
			if n := len(v.Points()); n != c.wantPoints {
				t.Errorf("%d points after 12 logs, want %d", n, c.wantPoints)
			}
		})
	}
}

// TestServer_SetRetention: a reload changes the retention of open volumes and of volumes
// opened later. It prunes nothing by itself; the next log applied prunes by the new
// retention, and a narrowed keep-for still protects every point inside it from a flood.
func TestServer_SetRetention(t *testing.T) {
	srv, url := retentionServer(t, func(string) (int, time.Duration) { return 2, 168 * time.Hour })
	v, err := srv.Volume("vol")
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{t: t, url: url, gen: 1}
	flood(t, a, v, 6)
	if n := len(v.Points()); n != 6 {
		t.Fatalf("%d points, want all 6 (younger than a week)", n)
	}

	// keep-for narrowed to an hour: the two oldest points are now outside it.
	srv.SetRetention(func(string) (int, time.Duration) { return 2, time.Hour })
	v.mu.Lock()
	for i := range 2 {
		v.st.Points[i].Applied = time.Now().Add(-2 * time.Hour)
	}
	v.mu.Unlock()
	if n, d := v.Retention(); n != 2 || d != time.Hour {
		t.Fatalf("retention after SetRetention: %d, %s", n, d)
	}
	if n := len(v.Points()); n != 6 {
		t.Fatalf("SetRetention pruned by itself: %d points left, want 6", n)
	}
	young := v.Points()[2:]
	flood(t, a, v, 20)
	ps := v.Points()
	if len(ps) != 4+20 || ps[0] != young[0] {
		t.Fatalf("%d points after the flood, want the 4 younger than an hour and the 20 new ones (first %+v, want %+v)", len(ps), ps[0], young[0])
	}

	// Only a count: the next log prunes to it.
	srv.SetRetention(func(string) (int, time.Duration) { return 1, 0 })
	flood(t, a, v, 1)
	if n := len(v.Points()); n != 1 {
		t.Errorf("%d points with keep-points 1, want 1", n)
	}
	w, err := srv.Volume("later")
	if err != nil {
		t.Fatal(err)
	}
	if n, d := w.Retention(); n != 1 || d != 0 {
		t.Errorf("a volume opened after SetRetention has retention %d, %s; want 1, 0s", n, d)
	}
	srv.SetRetention(nil)
	if n, d := v.Retention(); n != 3 || d != 0 {
		t.Errorf("SetRetention(nil): retention %d, %s; want Options' 3, 0s", n, d)
	}
}

// TestServer_ReloadWhileServing: retention and access change while logs arrive (run with
// -race); every log is still applied, and the volume ends with the last retention set.
func TestServer_ReloadWhileServing(t *testing.T) {
	srv, url := retentionServer(t, nil)
	v, err := srv.Volume("vol")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			n := 2 + i%3
			srv.SetRetention(func(string) (int, time.Duration) { return n, time.Duration(i) * time.Second })
			srv.SetAccess(Access{Allow: map[string]string{"other": "dr"}})
		}
		srv.SetRetention(func(string) (int, time.Duration) { return 2, 0 })
	}()
	flood(t, &attacker{t: t, url: url, gen: 1}, v, 20)
	<-done
	if n, d := v.Retention(); n != 2 || d != 0 {
		t.Errorf("retention %d, %s after the last SetRetention; want 2, 0s", n, d)
	}
}
