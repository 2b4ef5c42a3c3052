package daemon

import (
	"strings"
	"sync"
	"testing"
	"time"

	"drfs/config"
	"drfs/control"
)

// TestHost_StatusLastIsLatest: two volumes come up at once and the first one's STATUS= is
// slow to send. systemd shows the last STATUS= it received, so that one must count both
// volumes mounted, not the first volume's older count.
func TestHost_StatusLastIsLatest(t *testing.T) {
	var (
		mu   sync.Mutex
		sent []string
		a, b *runner
	)
	bRunning := func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.state == control.VolumeRunning
	}
	first := true
	h := New(&config.Host{}, Options{Notify: func(state string) {
		mu.Lock()
		slow := first
		first = false
		mu.Unlock()
		if slow {
			// Hold a's message until b is mounted too; without the lock b's STATUS= goes
			// out first. With it, give b a moment to reach the lock.
			deadline := time.Now().Add(5 * time.Second)
			for !bRunning() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		sent = append(sent, state)
		mu.Unlock()
	}})
	a = newRunner(h, &config.Volume{Name: "a"}, nil, "")
	b = newRunner(h, &config.Volume{Name: "b"}, nil, "")
	h.runners["a"], h.runners["b"] = a, b

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.setState(control.VolumeRunning) }()
	for {
		mu.Lock()
		started := !first
		mu.Unlock()
		if started {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.setState(control.VolumeRunning)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 2 {
		t.Fatalf("sent %q, want two STATUS= messages", sent)
	}
	if last := sent[len(sent)-1]; !strings.HasPrefix(last, "STATUS=2 of 2 volumes mounted") {
		t.Errorf("last message %q (all: %q), want STATUS=2 of 2 volumes mounted", last, sent)
	}
}
