package replica

import (
	"errors"
	"path/filepath"
	"testing"

	"drfs/journal"
	"drfs/wire"
)

// mustPromotable returns a consistent replica at some applied seq.
func mustPromotable(t *testing.T) (*Volume, string) {
	t.Helper()
	dir := t.TempDir()
	v := MustOpenVolume(t, dir)
	mustApply(t, v, jlog(v, journal.OpCreate{Path: "a", Mode: 0o644}))
	if err := v.SyncComplete("vol-1", 1, v.State().Applied, 0, true); err != nil {
		t.Fatal(err)
	}
	if !v.State().Consistent {
		t.Fatalf("test setup: replica not consistent: %+v", v.State())
	}
	return v, dir
}

// TestPromote_KeyIdempotent: the same planned promote again answers the same result and
// promotes once; a different key is told it was superseded.
func TestPromote_KeyIdempotent(t *testing.T) {
	v, _ := mustPromotable(t)
	seq := v.State().Applied
	o := wire.PromoteOptions{Planned: true, ExpectSeq: seq, Key: "k1"}
	first, err := v.Promote(o)
	if err != nil {
		t.Fatal(err)
	}
	again, err := v.Promote(o)
	if err != nil || again != first {
		t.Fatalf("repeated promote: %+v, %v; want %+v", again, err, first)
	}
	if st := v.State(); st.Generation != 2 || len(st.History) != 2 || st.PromoteKey != "k1" {
		t.Errorf("after two identical requests: generation %d, %d history entries, key %q", st.Generation, len(st.History), st.PromoteKey)
	}
	if _, err := v.Promote(wire.PromoteOptions{Planned: true, ExpectSeq: seq, Key: "k2"}); !errors.Is(err, ErrStale) {
		t.Errorf("another key after the promotion: %v, want ErrStale", err)
	}
	if r, err := v.AbortPromotion("k1"); err != nil || r.Aborted || r.Generation != 2 {
		t.Errorf("abort of the key that promoted: %+v, %v; want the promotion's result", r, err)
	}
	// The answer survives a restart.
	dir := filepath.Dir(v.dir)
	v.Close()
	v2, err := OpenVolume(dir, "vol", Options{PreparePrimary: prepareStub})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if r, err := v2.Promote(o); err != nil || r != first {
		t.Errorf("after a restart: %+v, %v; want %+v", r, err, first)
	}
}

// TestPromote_RefusedKeyStaysRefused: a refused or aborted key never promotes later, even when
// the reason for the refusal is gone.
func TestPromote_RefusedKeyStaysRefused(t *testing.T) {
	v, _ := mustPromotable(t)
	seq := v.State().Applied
	if _, err := v.Promote(wire.PromoteOptions{Planned: true, ExpectSeq: seq + 5, Key: "early"}); !errors.Is(err, ErrPromoteRefused) {
		t.Fatalf("promote at a seq not applied: %v, want ErrPromoteRefused", err)
	}
	mustApply(t, v, jlog(v, journal.OpCreate{Path: "b", Mode: 0o644}, journal.OpCreate{Path: "c", Mode: 0o644}))
	if _, err := v.Promote(wire.PromoteOptions{Planned: true, ExpectSeq: v.State().Applied, Key: "early"}); !errors.Is(err, ErrPromoteRefused) {
		t.Fatalf("a refused key promoted later: %v", err)
	}
	r, err := v.AbortPromotion("late")
	if err != nil || !r.Aborted {
		t.Fatalf("abort: %+v, %v", r, err)
	}
	if _, err := v.Promote(wire.PromoteOptions{Planned: true, ExpectSeq: v.State().Applied, Key: "late"}); !errors.Is(err, ErrPromoteRefused) {
		t.Fatalf("an aborted key promoted: %v", err)
	}
	if st := v.State(); st.Role == "promoted" {
		t.Fatalf("promoted after refusals: %+v", st)
	}
	if _, err := v.Promote(wire.PromoteOptions{Planned: true, ExpectSeq: v.State().Applied, Key: "k3"}); err != nil {
		t.Fatalf("a fresh key: %v", err)
	}
}

// TestPromote_HandOverRequestKeepsItsID: asking again while the primary is in contact keeps
// one hand-over request; its refusal clears it.
func TestPromote_HandOverRequestKeepsItsID(t *testing.T) {
	v, _ := mustPromotable(t)
	v.Touch()
	if _, err := v.Promote(wire.PromoteOptions{}); !errors.Is(err, ErrHandOver) {
		t.Fatalf("promote with the primary in contact: %v, want ErrHandOver", err)
	}
	id := v.State().HandOverID
	if _, err := v.Promote(wire.PromoteOptions{}); !errors.Is(err, ErrHandOver) || v.State().HandOverID != id || id == "" {
		t.Fatalf("second request: %v, id %q then %q", err, id, v.State().HandOverID)
	}
	if _, err := v.AbortPromotion(id); err != nil {
		t.Fatal(err)
	}
	if st := v.State(); st.HandOver != nil || st.HandOverID != "" {
		t.Errorf("hand-over request still set after its abort: %+v", st)
	}
}
