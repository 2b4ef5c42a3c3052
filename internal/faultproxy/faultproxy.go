// Package faultproxy is a fault-injecting TCP proxy for tests: put it between
// a primary and a replica on loopback and it delays, corrupts, truncates, cuts
// and refuses connections.
//
// Each accepted connection (the client side) gets its own connection to the
// target (the server side) and two pumps: up (client to server) and down
// (server to client). A pump reads a chunk of at most 32 KiB, applies the
// faults and writes it on. A clean EOF is passed on as a half-close, so
// request/response protocols that rely on it work through the proxy.
//
// # Determinism
//
// Every random choice comes from generators seeded from Faults.Seed and the
// connection's accept order (0, 1, 2, ...): one for the per-connection
// decisions (refuse, drop, truncate and their cut points), one per pump for
// the per-chunk bit flips. The same Seed and the same sequence of connections
// therefore make the same per-connection decisions. Per-chunk outcomes also
// depend on how TCP splits the stream into reads, which the proxy does not
// control: with FlipProb 1 every chunk is flipped, but how many chunks there
// are varies from run to run.
//
// Only loopback addresses are accepted, so a test can never send traffic off
// the machine through the proxy.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// chunkSize bounds one read, and so how much one flip or one delay covers.
const chunkSize = 32 << 10

// Faults says what to do to the traffic. The zero value forwards everything
// untouched.
//
// Per-connection decisions (RefuseProb, DropProb with MaxCutBytes,
// TruncateProb) are made once, when a connection is accepted, with the Faults
// in effect then. Delay, FlipProb, BothWays and DropAfterBytes are read again
// for every chunk, so SetFaults changes them for connections already open:
// setting DropAfterBytes cuts every open connection that has already forwarded
// that many bytes in a direction as soon as it forwards another chunk.
type Faults struct {
	// DropAfterBytes closes both sides of a connection once this many
	// bytes have been forwarded in one direction (exactly that many are
	// delivered). 0 means never.
	DropAfterBytes int64
	// DropProb is the probability that a connection is cut after a
	// uniformly random number of bytes in [0, MaxCutBytes), counting
	// both directions together. With MaxCutBytes 0 the cut is at byte 0:
	// the connection is accepted and closed without forwarding anything.
	DropProb    float64
	MaxCutBytes int64
	// Delay is slept before forwarding each chunk.
	Delay time.Duration
	// FlipProb is the probability that one uniformly random bit of a chunk
	// is flipped. Only client to server chunks are flipped unless BothWays.
	FlipProb float64
	BothWays bool
	// TruncateProb is the probability that a connection's client to server
	// stream ends early: after a uniformly random number of bytes in
	// [0, MaxCutBytes) the server sees EOF (a half-close) and the proxy
	// discards whatever else the client sends. Once the server has
	// finished answering (its side reaches EOF or fails), the whole
	// connection is closed.
	TruncateProb float64
	// RefuseProb is the probability that a connection is accepted and
	// closed at once, without dialing the target.
	RefuseProb float64
	// Seed seeds all random choices; see the package documentation.
	Seed int64
	// Match, when set, aims a fault at one message instead of a random
	// byte: see MatchFault.
	Match *MatchFault
}

// MatchAction is what a MatchFault does to the connection carrying the
// matched message.
type MatchAction int

const (
	// CutRequest forwards what precedes the pattern in the chunk, then
	// cuts the connection: the server never sees the request.
	CutRequest MatchAction = iota
	// CutMidway forwards the pattern and half of the rest of the chunk,
	// then cuts: the server sees a torn request.
	CutMidway
	// CutReply forwards the request whole, then cuts the connection in
	// place of the server's first answer bytes: the server acted on the
	// request, the client never learns how.
	CutReply
)

// MatchFault cuts a connection at the first client to server chunk that
// contains Pattern (a request line such as "POST /v1/x/promote"), Times
// times; 0 means every time. A pattern split across two reads is not seen.
// SetFaults restarts the count.
type MatchFault struct {
	Pattern []byte
	Action  MatchAction
	Times   int
}

func (f Faults) validate() error {
	for _, p := range []struct {
		name string
		v    float64
	}{{"DropProb", f.DropProb}, {"FlipProb", f.FlipProb}, {"TruncateProb", f.TruncateProb}, {"RefuseProb", f.RefuseProb}} {
		if !(p.v >= 0 && p.v <= 1) { // also rejects NaN
			return fmt.Errorf("faultproxy: %s %v out of [0, 1]", p.name, p.v)
		}
	}
	if f.DropAfterBytes < 0 || f.MaxCutBytes < 0 || f.Delay < 0 {
		return fmt.Errorf("faultproxy: negative DropAfterBytes, MaxCutBytes or Delay")
	}
	return nil
}

// Stats counts what the proxy did. Conns counts every accepted connection,
// refused ones included; Dropped counts connections cut by DropAfterBytes or
// DropProb; Flipped counts flipped chunks; BytesUp and BytesDown count bytes
// delivered client to server and server to client, after faults.
type Stats struct {
	Conns, Dropped, Flipped, Truncated, Refused int64
	BytesUp, BytesDown                          int64
	// Matched counts the messages a MatchFault cut.
	Matched int64
}

// Proxy is a running fault-injecting proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	ln     net.Listener
	target string // resolved loopback ip:port

	ctx    context.Context // cancelled by Close; aborts dials and delays
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	faults Faults
	links  map[*link]struct{}
	nextID uint64
	closed bool

	conns, dropped, flipped, truncated, refused atomic.Int64
	bytesUp, bytesDown                          atomic.Int64
	matched                                     atomic.Int64
	matchFired                                  atomic.Int64 // firings of the current MatchFault
}

// Start listens on listen (a loopback "ip:port"; port 0 picks one) and
// forwards each connection to target, applying f. Both addresses must be
// loopback IPs or "localhost" (taken as 127.0.0.1, without a DNS lookup).
func Start(listen, target string, f Faults) (*Proxy, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	la, err := loopback(listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen address: %w", err)
	}
	ta, err := loopback(target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target address: %w", err)
	}
	ln, err := net.Listen("tcp", la.String())
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln:     ln,
		target: ta.String(),
		ctx:    ctx,
		cancel: cancel,
		faults: f,
		links:  make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// loopback parses "host:port" and insists that host is a loopback address.
func loopback(addr string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q is not a loopback IP address", addr)
	}
	if !ip.Unmap().IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("%q is not a loopback address; faultproxy only proxies on this machine", addr)
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(ip.Unmap().String(), port))
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ap, nil
}

// Addr is the address clients should dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetFaults replaces the faults for new chunks and new connections (see
// Faults for which is which). It panics on invalid faults, as Start would
// have returned an error for them.
func (p *Proxy) SetFaults(f Faults) {
	if err := f.validate(); err != nil {
		panic(err)
	}
	p.mu.Lock()
	p.faults = f
	p.matchFired.Store(0)
	p.mu.Unlock()
}

// matchChunk reports whether the current MatchFault fires on chunk, and
// where its pattern starts.
func (p *Proxy) matchChunk(m *MatchFault, chunk []byte) (int, bool) {
	if m == nil || len(m.Pattern) == 0 {
		return 0, false
	}
	i := bytes.Index(chunk, m.Pattern)
	if i < 0 {
		return 0, false
	}
	if m.Times > 0 && p.matchFired.Add(1) > int64(m.Times) {
		return 0, false
	}
	p.matched.Add(1)
	return i, true
}

func (p *Proxy) currentFaults() Faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Conns:     p.conns.Load(),
		Dropped:   p.dropped.Load(),
		Flipped:   p.flipped.Load(),
		Truncated: p.truncated.Load(),
		Refused:   p.refused.Load(),
		BytesUp:   p.bytesUp.Load(),
		BytesDown: p.bytesDown.Load(),
		Matched:   p.matched.Load(),
	}
}

// Close stops accepting, closes every open connection and waits for all of
// the proxy's goroutines to return. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()

	p.cancel()
	err := p.ln.Close()
	for _, l := range links {
		l.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // listener closed
		}
		p.conns.Add(1)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		id := p.nextID
		p.nextID++
		f := p.faults
		l := newLink(p, id, c, f)
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go l.run()
	}
}

// link is one proxied connection.
type link struct {
	p      *Proxy
	id     uint64
	seed   int64
	client net.Conn
	server net.Conn // set by run under p.mu before the pumps start

	refuse  bool
	cutAt   int64 // total bytes after which to cut; -1 for never
	truncAt int64 // up bytes after which to half-close; -1 for never

	mu    sync.Mutex
	total int64 // bytes forwarded both ways, against cutAt

	dropped   atomic.Bool   // counted in Stats.Dropped
	cutReply  atomic.Bool   // a CutReply fault fired: cut instead of forwarding the answer
	truncated atomic.Bool   // the up stream was half-closed by truncation
	downDone  chan struct{} // closed when the down pump returns
}

// newLink draws the per-connection decisions. It always draws the same five
// numbers in the same order, so changing one probability does not shift the
// others' outcomes.
func newLink(p *Proxy, id uint64, c net.Conn, f Faults) *link {
	rng := rand.New(rand.NewPCG(uint64(f.Seed), id<<2))
	refuse := rng.Float64()
	drop, cut := rng.Float64(), rng.Uint64()
	trunc, truncAt := rng.Float64(), rng.Uint64()
	l := &link{
		p: p, id: id, seed: f.Seed, client: c,
		refuse:   refuse < f.RefuseProb,
		cutAt:    -1,
		truncAt:  -1,
		downDone: make(chan struct{}),
	}
	if drop < f.DropProb {
		l.cutAt = point(cut, f.MaxCutBytes)
	}
	if trunc < f.TruncateProb {
		l.truncAt = point(truncAt, f.MaxCutBytes)
	}
	return l
}

// point maps r onto [0, n), or 0 if n is 0.
func point(r uint64, n int64) int64 {
	if n <= 0 {
		return 0
	}
	return int64(r % uint64(n)) // the modulo bias is irrelevant for a test tool
}

func (l *link) run() {
	p := l.p
	defer p.wg.Done()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	if l.refuse {
		p.refused.Add(1)
		return
	}
	if l.cutAt == 0 {
		l.drop()
		return
	}
	var d net.Dialer
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return // the client sees its connection closed, as if the target were down
	}
	p.mu.Lock()
	l.server = server
	p.mu.Unlock()
	if p.ctx.Err() != nil {
		return // Close ran while we dialed and may have missed server
	}

	upDone := make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(upDone)
		l.pump(true)
	}()
	l.pump(false)
	<-upDone
}

// close closes both sides. It may run more than once and from any goroutine;
// closing a net.Conn twice is harmless.
func (l *link) close() {
	l.client.Close()
	l.p.mu.Lock()
	s := l.server
	l.p.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

func (l *link) drop() {
	if l.dropped.CompareAndSwap(false, true) {
		l.p.dropped.Add(1)
	}
	l.close()
}

// truncateUp half-closes the server side, then discards what the client
// still sends until the down pump finishes, which closes the connection.
func (l *link) truncateUp() {
	l.p.truncated.Add(1)
	l.truncated.Store(true)
	if err := closeWrite(l.server); err != nil {
		l.close()
		return
	}
	select {
	case <-l.downDone:
		// The down pump finished before it could see truncated.
		l.close()
	default:
		io.Copy(io.Discard, l.client)
	}
}

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

type stop int

const (
	stopNone stop = iota
	stopTruncate
	stopDrop
)

// pump forwards one direction until EOF, an error or a fault ends it.
func (l *link) pump(up bool) {
	p := l.p
	src, dst, counter, stream := l.server, l.client, &p.bytesDown, uint64(2)
	if up {
		src, dst, counter, stream = l.client, l.server, &p.bytesUp, 1
	} else {
		defer func() {
			close(l.downDone)
			if l.truncated.Load() {
				l.close()
			}
		}()
	}
	if up && l.truncAt == 0 {
		l.truncateUp()
		return
	}
	rng := rand.New(rand.NewPCG(uint64(l.seed), l.id<<2|stream))
	buf := make([]byte, chunkSize)
	var sent int64 // bytes forwarded by this pump
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f := p.currentFaults()
			chunk := buf[:n]
			why := stopNone
			if up && l.truncAt > 0 && sent+int64(len(chunk)) >= l.truncAt {
				chunk, why = chunk[:l.truncAt-sent], stopTruncate
			}
			if f.DropAfterBytes > 0 && sent+int64(len(chunk)) >= f.DropAfterBytes {
				chunk, why = chunk[:max(0, f.DropAfterBytes-sent)], stopDrop
			}
			if !up && l.cutReply.Load() {
				l.drop()
				return
			}
			if up {
				if i, ok := p.matchChunk(f.Match, chunk); ok {
					switch f.Match.Action {
					case CutRequest:
						chunk, why = chunk[:i], stopDrop
					case CutMidway:
						chunk, why = chunk[:i+len(f.Match.Pattern)+(len(chunk)-i-len(f.Match.Pattern))/2], stopDrop
					case CutReply:
						l.cutReply.Store(true)
					}
				}
			}
			if l.cutAt > 0 {
				l.mu.Lock()
				if left := l.cutAt - l.total; left <= int64(len(chunk)) {
					chunk, why = chunk[:max(0, left)], stopDrop
				}
				l.total += int64(len(chunk))
				l.mu.Unlock()
			}
			if f.Delay > 0 && !sleep(p.ctx, f.Delay) {
				l.close()
				return
			}
			if len(chunk) > 0 && (up || f.BothWays) && f.FlipProb > 0 && rng.Float64() < f.FlipProb {
				bit := rng.IntN(len(chunk) * 8)
				chunk[bit/8] ^= 1 << (bit % 8)
				p.flipped.Add(1)
			}
			// Count before writing, so Stats never lags what a peer has
			// already seen; take back what was not written.
			counter.Add(int64(len(chunk)))
			w, werr := dst.Write(chunk)
			sent += int64(w)
			counter.Add(int64(w - len(chunk)))
			if werr != nil {
				l.close()
				return
			}
			switch why {
			case stopDrop:
				l.drop()
				return
			case stopTruncate:
				l.truncateUp()
				return
			}
		}
		if err == io.EOF {
			if closeWrite(dst) != nil {
				l.close()
			}
			return
		}
		if err != nil {
			l.close()
			return
		}
	}
}

// sleep waits for d or until ctx is done, and reports whether it slept.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
