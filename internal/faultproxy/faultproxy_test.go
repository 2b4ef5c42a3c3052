package faultproxy_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"drfs/internal/faultproxy"
)

// echoServer accepts on loopback and echoes every connection until EOF, then
// closes it. Accepted counts connections that reached it.
type echoServer struct {
	ln       net.Listener
	wg       sync.WaitGroup
	accepted atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func startEcho(tb testing.TB) *echoServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e := &echoServer{ln: ln, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.mu.Lock()
			e.conns[c] = struct{}{}
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				io.Copy(c, c)
				c.Close()
				e.mu.Lock()
				delete(e.conns, c)
				e.mu.Unlock()
			}()
		}
	}()
	tb.Cleanup(e.Close)
	return e
}

func (e *echoServer) Addr() string { return e.ln.Addr().String() }

func (e *echoServer) Close() {
	e.ln.Close()
	e.mu.Lock()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// MustStart starts a proxy in front of target and closes it at cleanup.
func MustStart(tb testing.TB, target string, f faultproxy.Faults) *faultproxy.Proxy {
	tb.Helper()
	p, err := faultproxy.Start("127.0.0.1:0", target, f)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// roundTrip sends data through addr, half-closes, and returns what came
// back and the read error (nil on a clean EOF).
func roundTrip(tb testing.TB, addr string, data []byte) ([]byte, error) {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		c.Write(data) // fails when the proxy cuts; the read side reports it
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		tb.Fatalf("round trip timed out after %d bytes", len(got))
	}
	return got, err
}

func TestProxy_NoFaults(t *testing.T) {
	e := startEcho(t)
	p := MustStart(t, e.Addr(), faultproxy.Faults{})
	data := randBytes(10<<20, 1)
	got, err := roundTrip(t, p.Addr(), data)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes back, want the %d sent, intact", len(got), len(data))
	}
	st := p.Stats()
	want := faultproxy.Stats{Conns: 1, BytesUp: 10 << 20, BytesDown: 10 << 20}
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
}

func TestProxy_Flip(t *testing.T) {
	e := startEcho(t)
	data := randBytes(1<<20, 2)

	p := MustStart(t, e.Addr(), faultproxy.Faults{FlipProb: 1, Seed: 7})
	got, err := roundTrip(t, p.Addr(), data)
	if err != nil || len(got) != len(data) {
		t.Fatalf("got %d bytes, %v; want %d", len(got), err, len(data))
	}
	// One bit per up chunk, none down; each chunk covers distinct bytes, so
	// no two flips cancel.
	st := p.Stats()
	if diff := bitDiff(got, data); st.Flipped == 0 || int64(diff) != st.Flipped {
		t.Fatalf("%d bits differ, Stats.Flipped %d; want equal and > 0", diff, st.Flipped)
	}

	p2 := MustStart(t, e.Addr(), faultproxy.Faults{FlipProb: 1, BothWays: true, Seed: 7})
	got, _ = roundTrip(t, p2.Addr(), data)
	st2 := p2.Stats()
	if diff := bitDiff(got, data); diff == 0 || int64(diff) > st2.Flipped {
		t.Fatalf("BothWays: %d bits differ, Flipped %d", diff, st2.Flipped)
	}
	if st2.Flipped < 2 {
		t.Fatalf("BothWays flipped %d chunks, want both directions", st2.Flipped)
	}
}

func bitDiff(a, b []byte) int {
	n := 0
	for i := range a {
		n += bits.OnesCount8(a[i] ^ b[i])
	}
	return n
}

func TestProxy_SetFaults(t *testing.T) {
	e := startEcho(t)
	p := MustStart(t, e.Addr(), faultproxy.Faults{})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("change log chunk")
	buf := make([]byte, len(msg))
	echo := func() []byte {
		t.Helper()
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		return buf
	}
	if got := echo(); !bytes.Equal(got, msg) {
		t.Fatalf("before SetFaults: %q", got)
	}
	// Per-chunk faults apply to the open connection.
	p.SetFaults(faultproxy.Faults{FlipProb: 1})
	if got := echo(); bytes.Equal(got, msg) || bitDiff(got, msg) != 1 {
		t.Fatalf("after SetFaults FlipProb 1: %q, want one bit flipped", got)
	}
	p.SetFaults(faultproxy.Faults{})
	if got := echo(); !bytes.Equal(got, msg) {
		t.Fatalf("after clearing faults: %q", got)
	}
	// DropAfterBytes cuts the open connection at its next chunk.
	p.SetFaults(faultproxy.Faults{DropAfterBytes: 1})
	c.Write(msg)
	if n, err := io.ReadFull(c, buf); err == nil {
		t.Fatalf("read %d bytes after DropAfterBytes, want the connection cut", n)
	}
	if st := p.Stats(); st.Dropped != 1 {
		t.Fatalf("Dropped %d, want 1", st.Dropped)
	}
	defer func() {
		if recover() == nil {
			t.Error("SetFaults with FlipProb 2 did not panic")
		}
	}()
	p.SetFaults(faultproxy.Faults{FlipProb: 2})
}

func TestProxy_DropAfterBytes(t *testing.T) {
	e := startEcho(t)
	p := MustStart(t, e.Addr(), faultproxy.Faults{DropAfterBytes: 1000})
	data := randBytes(100<<10, 3)
	got, _ := roundTrip(t, p.Addr(), data)
	if len(got) > 1000 || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("got %d bytes back, want at most 1000 and a prefix of the data", len(got))
	}
	st := p.Stats()
	if st.Dropped != 1 || st.BytesUp != 1000 || st.BytesDown > 1000 {
		t.Fatalf("stats %+v, want Dropped 1, BytesUp 1000, BytesDown <= 1000", st)
	}
}

func TestProxy_DropProb(t *testing.T) {
	e := startEcho(t)
	const max = 50 << 10
	p := MustStart(t, e.Addr(), faultproxy.Faults{DropProb: 1, MaxCutBytes: max, Seed: 11})
	data := randBytes(200<<10, 4)
	for i := range 5 {
		before := p.Stats()
		got, _ := roundTrip(t, p.Addr(), data)
		st := p.Stats()
		up, down := st.BytesUp-before.BytesUp, st.BytesDown-before.BytesDown
		if st.Dropped != before.Dropped+1 || up+down >= max {
			t.Fatalf("conn %d: dropped %d->%d, forwarded %d+%d; want one drop within %d bytes", i, before.Dropped, st.Dropped, up, down, max)
		}
		if !bytes.Equal(got, data[:len(got)]) {
			t.Fatalf("conn %d: got bytes that are not a prefix of the data", i)
		}
	}
	// DropProb 0 with MaxCutBytes set never cuts.
	p.SetFaults(faultproxy.Faults{MaxCutBytes: max})
	if got, err := roundTrip(t, p.Addr(), data); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("DropProb 0: %d bytes, %v", len(got), err)
	}
}

func TestProxy_Truncate(t *testing.T) {
	e := startEcho(t)
	const max = 10000
	data := randBytes(64<<10, 5)
	run := func() int {
		p := MustStart(t, e.Addr(), faultproxy.Faults{TruncateProb: 1, MaxCutBytes: max, Seed: 42})
		got, _ := roundTrip(t, p.Addr(), data)
		if len(got) >= max || !bytes.Equal(got, data[:len(got)]) {
			t.Fatalf("got %d bytes back, want a prefix shorter than %d", len(got), max)
		}
		st := p.Stats()
		if st.Truncated != 1 || st.BytesUp != int64(len(got)) || st.Dropped != 0 {
			t.Fatalf("stats %+v, want Truncated 1 and BytesUp %d", st, len(got))
		}
		return len(got)
	}
	// The truncation point depends only on the seed.
	if a, b := run(), run(); a != b {
		t.Fatalf("same seed truncated at %d and %d", a, b)
	}
}

func TestProxy_Refuse(t *testing.T) {
	e := startEcho(t)
	p := MustStart(t, e.Addr(), faultproxy.Faults{RefuseProb: 1})
	got, _ := roundTrip(t, p.Addr(), []byte("hello"))
	if len(got) != 0 {
		t.Fatalf("refused connection returned %q", got)
	}
	if st := p.Stats(); st.Refused != 1 || st.Conns != 1 || st.BytesUp != 0 {
		t.Fatalf("stats %+v, want one refused connection", st)
	}
	if e.accepted.Load() != 0 {
		t.Fatal("a refused connection reached the target")
	}
}

// refusals records which of n sequential connections were refused.
func refusals(t *testing.T, target string, seed int64, n int) string {
	p := MustStart(t, target, faultproxy.Faults{RefuseProb: 0.5, Seed: seed})
	var s strings.Builder
	for range n {
		before := p.Stats().Refused
		roundTrip(t, p.Addr(), []byte("x"))
		if p.Stats().Refused > before {
			s.WriteByte('R')
		} else {
			s.WriteByte('.')
		}
	}
	return s.String()
}

func TestProxy_Deterministic(t *testing.T) {
	e := startEcho(t)
	a := refusals(t, e.Addr(), 99, 32)
	b := refusals(t, e.Addr(), 99, 32)
	c := refusals(t, e.Addr(), 100, 32)
	if a != b {
		t.Fatalf("same seed: %s vs %s", a, b)
	}
	if a == c {
		t.Fatalf("seeds 99 and 100 both gave %s", a)
	}
	if !strings.Contains(a, "R") || !strings.Contains(a, ".") {
		t.Fatalf("RefuseProb 0.5 gave %s", a)
	}
}

func TestProxy_Delay(t *testing.T) {
	e := startEcho(t)
	p := MustStart(t, e.Addr(), faultproxy.Faults{Delay: 50 * time.Millisecond})
	start := time.Now()
	got, err := roundTrip(t, p.Addr(), []byte("ping"))
	if err != nil || string(got) != "ping" {
		t.Fatalf("got %q, %v", got, err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("round trip took %v, want >= 2 x 50ms", d)
	}
}

func TestProxy_TargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := MustStart(t, addr, faultproxy.Faults{})
	got, _ := roundTrip(t, p.Addr(), []byte("hello"))
	if len(got) != 0 {
		t.Fatalf("got %q from a dead target", got)
	}
}

func TestProxy_CloseLeavesNoGoroutines(t *testing.T) {
	e := startEcho(t)
	base := runtime.NumGoroutine()

	p, err := faultproxy.Start("127.0.0.1:0", e.Addr(), faultproxy.Faults{Delay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Open connections parked in a Delay and in reads, then close under them.
	var clients []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("stuck"))
		clients = append(clients, c)
	}
	waitFor(t, func() bool { return e.accepted.Load() == 5 })
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, c := range clients {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("client connection still open after Close")
		}
		c.Close()
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Fatal("proxy still accepting after Close")
	}
	e.Close()
	waitFor(t, func() bool { return runtime.NumGoroutine() <= base-1 }) // base included the echo accept loop
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("condition not met after 5s; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStart_RefusesNonLoopback(t *testing.T) {
	e := startEcho(t)
	for _, tc := range []struct{ listen, target string }{
		{"127.0.0.1:0", "8.8.8.8:53"},
		{"127.0.0.1:0", "192.168.1.10:8443"},
		{"127.0.0.1:0", "[2001:db8::1]:443"},
		{"127.0.0.1:0", "example.com:443"},
		{"127.0.0.1:0", "[fe80::1%lo]:443"},
		{"127.0.0.1:0", "no-port"},
		{":0", e.Addr()},
		{"0.0.0.0:0", e.Addr()},
		{"[::]:0", e.Addr()},
		{"10.0.0.1:0", e.Addr()},
	} {
		p, err := faultproxy.Start(tc.listen, tc.target, faultproxy.Faults{})
		if err == nil {
			p.Close()
			t.Errorf("Start(%q, %q) succeeded, want an error", tc.listen, tc.target)
		}
	}
	if e.accepted.Load() != 0 {
		t.Fatal("a refused Start reached the target")
	}
	// localhost, IPv6 loopback and IPv4-mapped loopback are fine.
	for _, target := range []string{"localhost:" + port(e.Addr()), "[::ffff:127.0.0.1]:" + port(e.Addr())} {
		p, err := faultproxy.Start("localhost:0", target, faultproxy.Faults{})
		if err != nil {
			t.Fatalf("Start(localhost:0, %s): %v", target, err)
		}
		if got, err := roundTrip(t, p.Addr(), []byte("hi")); err != nil || string(got) != "hi" {
			t.Errorf("via %s: %q %v", target, got, err)
		}
		p.Close()
	}
}

func TestStart_InvalidFaults(t *testing.T) {
	for _, f := range []faultproxy.Faults{
		{DropProb: -0.1}, {FlipProb: 1.5}, {RefuseProb: 2}, {TruncateProb: -1},
		{DropAfterBytes: -1}, {MaxCutBytes: -1}, {Delay: -time.Second}, {FlipProb: math.NaN()},
	} {
		if p, err := faultproxy.Start("127.0.0.1:0", "127.0.0.1:1", f); err == nil {
			p.Close()
			t.Errorf("Start with %+v succeeded", f)
		}
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// TestProxy_Match cuts one HTTP request in each of the three places and
// checks what the server saw, and that the fault fires only Times times.
func TestProxy_Match(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action faultproxy.MatchAction
		served int64 // handler runs that read the whole body
	}{
		{"request", faultproxy.CutRequest, 0},
		{"midway", faultproxy.CutMidway, 0},
		{"reply", faultproxy.CutReply, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var served atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if b, err := io.ReadAll(r.Body); err == nil && len(b) == 4096 {
					served.Add(1)
				}
				io.WriteString(w, "done")
			}))
			t.Cleanup(srv.Close)
			p := MustStart(t, strings.TrimPrefix(srv.URL, "http://"), faultproxy.Faults{
				Match: &faultproxy.MatchFault{Pattern: []byte("POST /act"), Action: tc.action, Times: 1},
			})
			c := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
			t.Cleanup(c.CloseIdleConnections)
			body := strings.Repeat("x", 4096)
			post := func() (string, error) {
				resp, err := c.Post("http://"+p.Addr()+"/act", "text/plain", strings.NewReader(body))
				if err != nil {
					return "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return string(b), err
			}
			if got, err := post(); err == nil {
				t.Fatalf("first request answered %q through a %s cut", got, tc.name)
			}
			time.Sleep(50 * time.Millisecond) // let a torn request reach the handler
			if n := served.Load(); n != tc.served {
				t.Errorf("server acted on %d requests after the cut, want %d", n, tc.served)
			}
			if got, err := post(); err != nil || got != "done" {
				t.Fatalf("second request: %q, %v; the fault should fire once", got, err)
			}
			if st := p.Stats(); st.Matched != 1 {
				t.Errorf("Stats.Matched = %d, want 1", st.Matched)
			}
		})
	}
}
