package httpserve

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Go profiles (heap contents, goroutine stacks with arguments) are served only on a loopback
// metrics address, or anywhere with an explicit --pprof; metrics are served everywhere.
func TestMetrics_PprofOnlyOnLoopbackOrFlag(t *testing.T) {
	for _, c := range []struct {
		addr  string
		flag  bool
		pprof bool
	}{
		{"127.0.0.1:9750", false, true},
		{"[::1]:9750", false, true},
		{"localhost:9750", false, true},
		{"0.0.0.0:9750", false, false},
		{":9750", false, false},
		{"10.1.2.3:9750", false, false},
		{"127.evil.example:9750", false, false},
		{"0.0.0.0:9750", true, true},
	} {
		h := Metrics(prometheus.NewRegistry(), c.addr, c.flag)
		get := func(path string) int {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			return rec.Code
		}
		if code := get("/metrics"); code != http.StatusOK {
			t.Errorf("%s pprof=%v: /metrics answered %d", c.addr, c.flag, code)
		}
		for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=2"} {
			code := get(p)
			if c.pprof && code != http.StatusOK {
				t.Errorf("%s pprof=%v: %s answered %d, want 200", c.addr, c.flag, p, code)
			}
			if !c.pprof && code != http.StatusNotFound {
				t.Errorf("%s pprof=%v: %s answered %d, want 404", c.addr, c.flag, p, code)
			}
		}
	}
}
