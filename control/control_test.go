package control

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"drfs/internal/logtest"
	"drfs/shipper"
	"drfs/volume"
)

// fakeService answers with canned results and records what it was asked.
type fakeService struct {
	status   Status
	err      error
	deadline time.Duration // time left to the deadline of the last call's context
	key      string
	force    bool
	dir      string
}

func (f *fakeService) left(ctx context.Context) {
	if d, ok := ctx.Deadline(); ok {
		f.deadline = time.Until(d)
	} else {
		f.deadline = -1
	}
}

func (f *fakeService) Status(context.Context) Status { return f.status }
func (f *fakeService) Sync(ctx context.Context) (SyncResult, error) {
	f.left(ctx)
	return SyncResult{AckedSeq: 42}, f.err
}
func (f *fakeService) Failover(ctx context.Context, key string) (shipper.FailoverResult, error) {
	f.left(ctx)
	f.key = key
	return shipper.FailoverResult{Key: "fo-1", Generation: 3, Seq: 99, Pause: 1500 * time.Millisecond, NewSource: "/r/v/data", NewState: "/r/v/primary"}, f.err
}
func (f *fakeService) Resolve(ctx context.Context, force bool) (shipper.ResolveResult, error) {
	f.left(ctx)
	f.force = force
	return shipper.ResolveResult{Key: "fo-1", Outcome: "aborted", Detail: "not promoted"}, f.err
}
func (f *fakeService) Verify(ctx context.Context) (shipper.VerifyResult, error) {
	f.left(ctx)
	return shipper.VerifyResult{Seq: 7, Files: 2, Bytes: 4096, Differences: []shipper.Difference{{Path: "a", Off: 0, Len: 10, What: "content"}}}, f.err
}
func (f *fakeService) SeedExport(ctx context.Context, dir string) (SeedExportResult, error) {
	f.left(ctx)
	f.dir = dir
	return SeedExportResult{Seq: 5, Files: 3}, f.err
}

// mustServe serves svc on the control socket of a new state directory, until the test ends.
func mustServe(t *testing.T, svc Service) string {
	t.Helper()
	state := t.TempDir()
	srv, err := Listen(state, svc, logtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return state
}

func testStatus() Status {
	return Status{
		Volume: volume.Status{Volume: "vms", VolumeID: "id-1", Role: "primary", Mounted: true, Mountpoint: "/mnt",
			Source: "/src", JournalSeq: 10, Generation: 2, AckedSeq: 8, Replica: "https://dr:9740",
			Resync: []volume.Extent{{Path: "disk.img", Off: 4096, Len: 512, Reason: "crash"}}, LastError: "meta: busy"},
		Replication: &shipper.Status{Replica: "https://dr:9740", Schedule: "every 30s", Generation: 2, AckedSeq: 9,
			LagSeconds: 1.25, State: "replicating"},
	}
}

// Every operation travels over a real unix socket and comes back typed, with the client's
// timeout reaching the server.
func TestClient_RoundTrip(t *testing.T) {
	svc := &fakeService{status: testStatus()}
	state := mustServe(t, svc)
	fi, err := os.Stat(SocketPath(state))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	c := NewClient(state)
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The flat object keeps one value per key: the replication's acked seq, the volume's
	// error (the replication has none).
	want := testStatus()
	want.Volume.AckedSeq = 9
	want.Replication.LastError = "meta: busy"
	if !reflect.DeepEqual(st, want) {
		t.Errorf("status\n%+v\nwant\n%+v", st, want)
	}

	if r, err := c.Sync(ctx, 5*time.Second); err != nil || r.AckedSeq != 42 {
		t.Errorf("sync: %+v, %v", r, err)
	}
	if svc.deadline <= 4*time.Second || svc.deadline > 5*time.Second {
		t.Errorf("sync ran with %v left, want the client's 5s", svc.deadline)
	}
	if _, err := c.Sync(ctx, 0); err != nil || svc.deadline <= DefaultSyncTimeout-time.Minute {
		t.Errorf("sync without a timeout: %v left, %v", svc.deadline, err)
	}
	fo, err := c.Failover(ctx, 3*time.Second)
	if err != nil || fo.Generation != 3 || fo.Pause != 1500*time.Millisecond || fo.NewState != "/r/v/primary" {
		t.Errorf("failover: %+v, %v", fo, err)
	}
	if svc.deadline <= 2*time.Second || svc.deadline > 3*time.Second || svc.key != "" {
		t.Errorf("failover ran with %v left, key %q", svc.deadline, svc.key)
	}
	if r, err := c.Resolve(ctx, true); err != nil || r.Outcome != "aborted" || !svc.force {
		t.Errorf("resolve --force: %+v, force %v, %v", r, svc.force, err)
	}
	if _, err := c.Resolve(ctx, false); err != nil || svc.force || svc.deadline > ResolveTimeout {
		t.Errorf("resolve: force %v, %v left, %v", svc.force, svc.deadline, err)
	}
	if r, err := c.Verify(ctx); err != nil || r.Seq != 7 || len(r.Differences) != 1 || r.Differences[0].Path != "a" {
		t.Errorf("verify: %+v, %v", r, err)
	}
	if r, err := c.SeedExport(ctx, "/seed dir&x"); err != nil || r.Files != 3 || svc.dir != "/seed dir&x" {
		t.Errorf("seed export: %+v to %q, %v", r, svc.dir, err)
	}
}

// Errors come back as *Error with their details: a failover's pause and doubt, a sync's
// progress.
func TestClient_Errors(t *testing.T) {
	svc := &fakeService{err: errors.Join(errors.New("the replica did not answer"), shipper.ErrInDoubt)}
	c := NewClient(mustServe(t, svc))
	ctx := context.Background()
	_, err := c.Failover(ctx, time.Second)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, shipper.ErrInDoubt) || e.Pause != 1500*time.Millisecond {
		t.Fatalf("failover error %#v", err)
	}
	if !strings.HasPrefix(err.Error(), "the replica did not answer") {
		t.Errorf("message %q", err)
	}
	svc.err = errors.New("context deadline exceeded")
	_, err = c.Sync(ctx, time.Second)
	if !errors.As(err, &e) || e.AckedSeq != 42 || errors.Is(err, shipper.ErrInDoubt) || err.Error() != "context deadline exceeded" {
		t.Errorf("sync error %#v", err)
	}
	if errors.Is(err, ErrNotRunning) || !Running(ctx, mustServe(t, svc)) {
		t.Error("a drfs that answers with an error is not running")
	}
}

// A socket nobody serves is ErrNotRunning, with the hint the commands print; ReadStatus then
// reads the state directory.
func TestClient_NotRunning(t *testing.T) {
	state := t.TempDir()
	_, err := NewClient(state).Sync(context.Background(), time.Second)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "is drfs mounted with --state "+state+"?") {
		t.Errorf("error %v", err)
	}
	if Running(context.Background(), state) {
		t.Error("Running with nothing serving")
	}
	if _, err := ReadStatus(context.Background(), state); err == nil || !strings.Contains(err.Error(), "not a drfs state directory") {
		t.Errorf("ReadStatus of an empty directory: %v", err)
	}
}

// The wire form is the flat object `drfs status --json` prints; without replication it has no
// replication fields.
func TestStatus_JSON(t *testing.T) {
	b, err := json.Marshal(testStatus())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	if m["acked_seq"] != 9.0 || m["replication_state"] != "replicating" || m["last_error"] != "meta: busy" || m["source"] != "/src" {
		t.Errorf("flat status %s", b)
	}
	st := testStatus()
	st.Replication.LastError = "replica refused"
	b, _ = json.Marshal(st)
	json.Unmarshal(b, &m)
	if m["last_error"] != "replica refused" {
		t.Errorf("the replication's error does not win: %s", b)
	}
	st.Replication = nil
	b, _ = json.Marshal(st)
	var back Status
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Replication != nil || !reflect.DeepEqual(back.Volume, st.Volume) {
		t.Errorf("round trip without replication: %+v", back)
	}
}
