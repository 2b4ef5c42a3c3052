package replica

import (
	"context"
	"drfs/internal/logtest"
	"drfs/wire"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"drfs/changelog"
	"drfs/journal"
)

// serveLocal serves the local handler of a replica server on dir's local socket until the test
// ends, as drfs serve does.
func serveLocal(t *testing.T, dir string) *Server {
	t.Helper()
	s, err := NewServer(dir, Options{PreparePrimary: prepareStub, Logger: logtest.Logger(t)}, changelog.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", Layout{Dir: dir}.Socket())
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.LocalHandler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); s.Close() })
	return s
}

// promotable makes volume "vol" of a new replica directory consistent at some seq, and closes
// it.
func promotable(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	v, err := OpenVolume(dir, "vol", Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, v, jlog(v, journal.OpCreate{Path: "a", Mode: 0o644}, journal.OpWrite{Path: "a", Data: []byte("x")}))
	if err := v.SyncComplete("vol-1", 1, v.State().Applied, 0, true); err != nil {
		t.Fatal(err)
	}
	v.Close()
	return dir
}

// The operator's commands work through a running server's local socket (which holds the
// volume locked) and, with none running, on the volume directly.
func TestOperator_ThroughServerOrDirect(t *testing.T) {
	for _, withServer := range []bool{true, false} {
		dir := promotable(t)
		if withServer {
			serveLocal(t, dir)
		}
		op := Operator{Layout: Layout{dir, "vol"}, PreparePrimary: prepareStub}
		tf, err := op.StartTestFailover(context.Background(), nil, "/mnt/test")
		if err != nil {
			t.Fatalf("server %v: test failover: %v", withServer, err)
		}
		if tf.Seq != 3 || tf.Name != "vol-test" || tf.Source != filepath.Join(op.TestFailover(), "data") {
			t.Errorf("server %v: test failover %+v", withServer, tf)
		}
		if b, err := os.ReadFile(filepath.Join(tf.Source, "a")); err != nil || string(b) != "x" {
			t.Errorf("server %v: clone holds %q, %v", withServer, b, err)
		}
		if _, err := op.StartTestFailover(context.Background(), nil, "/mnt/test"); err == nil || !strings.Contains(err.Error(), "exists") {
			t.Errorf("server %v: a second test failover: %v", withServer, err)
		}
		if dest, err := op.CleanupTestFailover(); err != nil || dest != op.TestFailover() {
			t.Errorf("server %v: cleanup %s: %v", withServer, dest, err)
		}
		if _, err := os.Stat(op.TestFailover()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("server %v: the clone is still there: %v", withServer, err)
		}
		res, err := op.Promote(context.Background(), wire.PromoteOptions{Force: true})
		if err != nil {
			t.Fatalf("server %v: promote: %v", withServer, err)
		}
		if res.State != op.Primary() || res.Generation != 2 {
			t.Errorf("server %v: promote %+v", withServer, res)
		}
		if _, err := op.Promote(context.Background(), wire.PromoteOptions{Force: true}); err == nil || !strings.Contains(err.Error(), "already promoted") {
			t.Errorf("server %v: promoting twice: %v", withServer, err)
		}
	}
}

// While the primary is in contact, a promote through the server asks it to hand over, and
// WaitHandOver reports the hand-over the replica refused; without a server the request is
// only recorded.
func TestOperator_HandOver(t *testing.T) {
	dir := promotable(t)
	s := serveLocal(t, dir)
	v, err := s.Volume("vol")
	if err != nil {
		t.Fatal(err)
	}
	v.Touch()
	op := Operator{Layout: Layout{dir, "vol"}, PreparePrimary: prepareStub}
	if _, err := op.Promote(context.Background(), wire.PromoteOptions{}); !errors.Is(err, ErrHandOverPending) {
		t.Fatalf("promote with the primary in contact: %v", err)
	}
	id := v.State().HandOverID
	// The primary tries the hand-over while the operator waits, and the replica refuses it.
	aborted := make(chan error, 1)
	go func() {
		time.Sleep(600 * time.Millisecond)
		_, err := v.AbortPromotion(id)
		aborted <- err
	}()
	_, err = op.WaitHandOver(context.Background(), 5*time.Second)
	if err := <-aborted; err != nil {
		t.Fatal(err)
	}
	var refused *HandOverRefusedError
	if !errors.As(err, &refused) || refused.ID != id {
		t.Errorf("wait for a refused hand-over: %v", err)
	}
	if _, err := (Operator{Layout: Layout{t.TempDir(), "vol"}}).WaitHandOver(context.Background(), 300*time.Millisecond); !errors.Is(err, ErrHandOverTimeout) {
		t.Errorf("wait with no server: %v", err)
	}
}
