package shipper

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

func TestAppendClock(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var c appendClock
	c.observe(at(0), 10) // the journal ended at 10
	c.observe(at(5), 10) // still at 10: record 11 is younger than 5 s
	c.observe(at(6), 20)
	c.observe(at(8), 30)
	if got := c.since(10); !got.Equal(at(5)) {
		t.Errorf("record 11 appended after %v, want after the last time the journal ended at 10 (%v)", got, at(5))
	}
	if got := c.since(25); !got.Equal(at(6)) {
		t.Errorf("record 26 appended after %v, want %v", got, at(6))
	}
	if len(c.samples) != 2 {
		t.Errorf("samples before the acknowledged seq are kept: %+v", c.samples)
	}
	if got := c.since(5); !got.Equal(at(6)) {
		t.Errorf("a seq before every sample: %v, want the oldest sample's time", got)
	}
	// Bounded: past maxClockSamples every other sample goes, which only makes lags older.
	var b appendClock
	for i := range maxClockSamples + 10 {
		b.observe(at(i), uint64(i+1))
	}
	if len(b.samples) > maxClockSamples {
		t.Fatalf("%d samples kept", len(b.samples))
	}
	if got := b.since(1000); got.After(at(999)) {
		t.Errorf("after thinning, record 1001 appended after %v: later than the truth (%v)", got, at(999))
	}
}

// holdTarget holds the first Send until released, and every Send after the first `pass` ones.
type holdTarget struct {
	Target
	mu      sync.Mutex
	sends   int
	pass    int
	started chan struct{}
	release chan struct{}
}

func (h *holdTarget) Send(ctx context.Context, b []byte) (uint64, error) {
	h.mu.Lock()
	h.sends++
	n := h.sends
	h.mu.Unlock()
	if h.started != nil && n == 1 {
		close(h.started)
		select {
		case <-h.release:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if n > h.pass {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return h.Target.Send(ctx, b)
}

// TestShipper_LagCountsFromTheOldestUnshipped: records written while a cycle ships its earlier
// logs are as old as they are, whatever log the cycle cuts last: the lag is the age of the
// oldest record the replica has not acknowledged, not of the last cut.
func TestShipper_LagCountsFromTheOldestUnshipped(t *testing.T) {
	clk := newFakeClock()
	h := &holdTarget{pass: 1 << 30}
	// 128 KiB/s: a log carries 256 KiB, so 512 KiB go in two logs.
	e := newEnv(t, Config{Schedule: Schedule{Continuous: true}, BWLimit: 128 << 10, Now: clk.Now}, func(tg Target) Target {
		h.Target = tg
		return h
	})
	e.sync(t)
	h.mu.Lock()
	h.sends, h.pass = 0, 2
	h.started, h.release = make(chan struct{}), make(chan struct{})
	h.mu.Unlock()
	data := patternBytes(512 << 10)
	for off := 0; off < len(data); off += 64 << 10 {
		e.write(t, int64(off), data[off:off+64<<10])
	}
	<-h.started // the cycle runs: its first log is on its way
	clk.Advance(time.Second)
	e.write(t, 1<<20, bytes.Repeat([]byte{7}, 4096)) // appended during the cycle, at +1 s
	clk.Advance(9 * time.Second)
	close(h.release)
	// The cycle's two logs land; the late write is held.
	waitFor(t, "the first write to be acknowledged", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.sends > 2
	})
	var lag float64
	waitFor(t, "the lag of the late write", func() bool {
		clk.Advance(time.Millisecond)
		lag = e.sh.Status().LagSeconds
		return lag >= 9
	})
	if lag > 10.5 {
		t.Errorf("lag %.1fs, want about 9 s (the late write's age)", lag)
	}
}

func patternBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7919 + i>>8)
	}
	return b
}

// A log sent again after its acknowledgement was lost (the replica's seq is a log boundary this
// shipper saw) brings back exactly the pending bytes of that boundary, not a segment-sized guess.
func TestShipper_ReanchorAtALogBoundary(t *testing.T) {
	e := newEnv(t, Config{Schedule: Schedule{Continuous: true}}, nil)
	e.write(t, 0, patternBytes(64<<10))
	e.sync(t)
	e.write(t, 64<<10, patternBytes(64<<10))
	e.sync(t)
	e.sh.opMu.Lock()
	defer e.sh.opMu.Unlock()
	e.sh.mu.Lock()
	marks := append([]logMark(nil), e.sh.marks...)
	now := e.sh.shippedMark
	e.sh.mu.Unlock()
	if len(marks) < 2 {
		t.Fatalf("marks %+v after two logs", marks)
	}
	prev := marks[len(marks)-2]
	e.sh.next.Store(prev.seq)
	e.sh.reanchor()
	e.sh.mu.Lock()
	got := e.sh.shippedMark
	e.sh.mu.Unlock()
	if got != prev.mark || got >= now {
		t.Fatalf("reanchored at seq %d to %d, want the boundary's %d (now %d)", prev.seq, got, prev.mark, now)
	}
	e.sh.next.Store(marks[len(marks)-1].seq)
	e.sh.reanchor()
}
