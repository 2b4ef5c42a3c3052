package replica

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"drfs/changelog"
	"drfs/internal/logtest"
	"drfs/journal"
	"drfs/wire"
)

// testServer serves a fresh replica directory; the caller's identity is the X-Primary header
// (standing in for the client certificate).
func testServer(t *testing.T, allow map[string]string, lim changelog.Limits) (*Server, *httptest.Server) {
	t.Helper()
	s, err := NewServer(t.TempDir(), Options{PreparePrimary: prepareStub, Logger: logtest.Logger(t)}, lim)
	if err != nil {
		t.Fatal(err)
	}
	s.SetAccess(Access{Allow: allow, Identify: func(r *http.Request) (string, error) {
		if id := r.Header.Get("X-Primary"); id != "" {
			return id, nil
		}
		return "", errors.New("no identity")
	}})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	return s, hs
}

func call(t *testing.T, hs *httptest.Server, who, method, path string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, hs.URL+path, bytes.NewReader(body))
	if who != "" {
		req.Header.Set("X-Primary", who)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func marshalLog(t *testing.T, ops ...journal.Op) []byte {
	t.Helper()
	b, _, err := changelog.Marshal(&changelog.Log{Header: changelog.Header{Kind: changelog.KindJournal, VolumeID: "vol-1",
		Generation: 1, FromSeq: 1, ToSeq: uint64(len(ops)), Created: time.Now().UTC()}, Ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// volumeEndpoints are every network endpoint of volume vol.
var volumeEndpoints = []struct{ method, path, body string }{
	{"GET", "/v1/volumes/vol", ""},
	{"PUT", "/v1/volumes/vol/log", ""}, // body set by the test
	{"POST", "/v1/volumes/vol/resync-begin", `{"volume_id":"vol-1","generation":1}`},
	{"POST", "/v1/volumes/vol/sync-complete", `{"volume_id":"vol-1","generation":1,"seq":5}`},
	{"GET", "/v1/volumes/vol/describe?path=f&block=4096", ""},
	{"GET", "/v1/volumes/vol/list?path=.", ""},
	{"GET", "/v1/volumes/vol/points", ""},
	{"POST", "/v1/volumes/vol/promote", `{"planned":true,"expect_seq":1}`},
}

// TestServer_VolumeBoundToFirstPrimary: the first primary that uses a volume owns it; another
// identity is refused with 403 on every endpoint and does not see it in the volume list.
func TestServer_VolumeBoundToFirstPrimary(t *testing.T) {
	s, hs := testServer(t, nil, changelog.Limits{})
	logBody := marshalLog(t, journal.OpCreate{Path: "f", Mode: 0o644}, journal.OpWrite{Path: "f", Data: bytes.Repeat([]byte("secret"), 2000)})
	if code, body := call(t, hs, "hq", "PUT", "/v1/volumes/vol/log", logBody); code != 200 {
		t.Fatalf("first primary's log: %d %s", code, body)
	}
	for _, e := range volumeEndpoints {
		body := []byte(e.body)
		if e.path == "/v1/volumes/vol/log" {
			body = logBody
		}
		for _, who := range []string{"paris", ""} {
			code, msg := call(t, hs, who, e.method, e.path, body)
			if code != http.StatusForbidden || !strings.Contains(msg, "forbidden") {
				t.Errorf("%s %s as %q: %d %s, want 403", e.method, e.path, who, code, msg)
			}
			if who != "" && !strings.Contains(msg, `bound to primary \"hq\"`) {
				t.Errorf("%s %s as %q: message %s does not name the bound primary", e.method, e.path, who, msg)
			}
		}
	}
	var list []wire.State
	_, body := call(t, hs, "paris", "GET", "/v1/volumes", nil)
	if json.Unmarshal([]byte(body), &list); len(list) != 0 {
		t.Errorf("another primary lists %d volumes", len(list))
	}
	_, body = call(t, hs, "hq", "GET", "/v1/volumes", nil)
	if json.Unmarshal([]byte(body), &list); len(list) != 1 || list[0].BoundPrimary != "hq" {
		t.Errorf("bound primary lists %s", body)
	}
	if code, body := call(t, hs, "hq", "GET", "/v1/volumes/vol/describe?path=f&block=4096", nil); code != 200 {
		t.Errorf("bound primary's describe: %d %s", code, body)
	}
	// The binding is durable.
	s.Close()
	st, err := ReadState(s.dir, "vol")
	if err != nil || st.BoundPrimary != "hq" || st.Applied != 2 {
		t.Errorf("state after restart: bound %q applied %d %v", st.BoundPrimary, st.Applied, err)
	}
}

// TestServer_AllowPinsVolume: the operator's --allow wins over first use, and refuses others
// without creating the volume.
func TestServer_AllowPinsVolume(t *testing.T) {
	s, hs := testServer(t, map[string]string{"vol": "dr"}, changelog.Limits{})
	if code, _ := call(t, hs, "hq", "GET", "/v1/volumes/vol", nil); code != http.StatusForbidden {
		t.Errorf("a primary other than the allowed one: %d, want 403", code)
	}
	if names := s.Names(); len(names) != 0 {
		t.Errorf("a refused request created volumes %v", names)
	}
	if code, body := call(t, hs, "dr", "GET", "/v1/volumes/vol", nil); code != 200 {
		t.Errorf("allowed primary: %d %s", code, body)
	}
	// Rebinding a volume bound on first use to another primary.
	s2, hs2 := testServer(t, nil, changelog.Limits{})
	call(t, hs2, "hq", "GET", "/v1/volumes/vol", nil)
	s2.SetAccess(Access{Allow: map[string]string{"vol": "dr"}, Identify: s2.getAccess().Identify})
	if code, body := call(t, hs2, "dr", "GET", "/v1/volumes/vol", nil); code != 200 || !strings.Contains(body, `"bound_primary":"dr"`) {
		t.Errorf("rebind with --allow: %d %s", code, body)
	}
	if code, _ := call(t, hs2, "hq", "GET", "/v1/volumes/vol", nil); code != http.StatusForbidden {
		t.Errorf("the old primary after the volume moved: %d, want 403", code)
	}
	// The allow entry removed (a reload): the volume stays bound to the primary that used it.
	s2.SetAccess(Access{Identify: s2.getAccess().Identify})
	if code, _ := call(t, hs2, "hq", "GET", "/v1/volumes/vol", nil); code != http.StatusForbidden {
		t.Errorf("the old primary after the allow entry was removed: %d, want 403", code)
	}
	if code, body := call(t, hs2, "dr", "GET", "/v1/volumes/vol", nil); code != 200 {
		t.Errorf("the bound primary after the allow entry was removed: %d %s", code, body)
	}
}

// TestServer_DescribeMinimumBlock: one hash per byte would be the data; blocks below
// MinHashBlock are refused.
func TestServer_DescribeMinimumBlock(t *testing.T) {
	_, hs := testServer(t, nil, changelog.Limits{})
	call(t, hs, "hq", "PUT", "/v1/volumes/vol/log", marshalLog(t, journal.OpCreate{Path: "f", Mode: 0o644}, journal.OpWrite{Path: "f", Data: []byte("secret")}))
	for _, b := range []string{"1", "16", "4095"} {
		if code, body := call(t, hs, "hq", "GET", "/v1/volumes/vol/describe?path=f&block="+b, nil); code != http.StatusBadRequest {
			t.Errorf("block=%s: %d %s, want 400", b, code, body)
		}
	}
}

// TestServer_OversizeLog413: a body over the limit is refused with 413, with or without a
// declared length, and nothing is applied.
func TestServer_OversizeLog413(t *testing.T) {
	s, hs := testServer(t, nil, changelog.Limits{MaxBodyBytes: 64 << 10})
	big := marshalLog(t, journal.OpCreate{Path: "f", Mode: 0o644}, journal.OpWrite{Path: "f", Data: bytes.Repeat([]byte{1}, 1<<20)})
	if code, body := call(t, hs, "hq", "PUT", "/v1/volumes/vol/log", big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize log: %d %s, want 413", code, body)
	}
	// Without a declared length (chunked), the header's sizes are refused before the body.
	req, _ := http.NewRequest("PUT", hs.URL+"/v1/volumes/vol/log", io.MultiReader(bytes.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("X-Primary", "hq")
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize chunked log: %d, want 413", resp.StatusCode)
	}
	v, _ := s.Volume("vol")
	if st := v.State(); st.Applied != 0 {
		t.Errorf("applied %d after refused logs", st.Applied)
	}
}
