package shipper

import (
	"drfs/internal/logtest"
	"strings"
	"testing"
)

// TestOpenTarget_InsecureLoopbackOnly: --insecure accepts a plaintext replica only at a
// loopback IP literal or the name localhost; a DNS name that merely starts with "127." could
// resolve anywhere.
func TestOpenTarget_InsecureLoopbackOnly(t *testing.T) {
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:9740", true},
		{"http://127.3.4.5:9740", true},
		{"http://[::1]:9740", true},
		{"http://localhost:9740", true},
		{"http://127.evil.example:9740", false},
		{"http://127.0.0.1.evil.example:9740", false},
		{"http://localhost.evil.example:9740", false},
		{"http://10.0.0.1:9740", false},
		{"http://[::ffff:10.0.0.1]:9740", false},
		{"http://0.0.0.0:9740", false},
		{"http://[::]:9740", false},
	} {
		tgt, err := OpenTarget(c.url, "v", nil, true, nil, logtest.Logger(t))
		if tgt != nil {
			tgt.Close()
		}
		if c.ok != (err == nil) {
			t.Errorf("OpenTarget(%q, insecure): err=%v, want ok=%v", c.url, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "loopback") {
			t.Errorf("OpenTarget(%q): error %q does not say why (loopback)", c.url, err)
		}
	}
}
