package e2e

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"drfs/tlsutil"
)

// certClient is an HTTPS client presenting cert (with the site key in keyDir) and trusting
// the CA in caDir.
func certClient(t *testing.T, caDir, cert, keyDir string) *http.Client {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert, filepath.Join(keyDir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := tlsutil.LoadClient(caDir)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Clone()
	c.Certificates = nil
	// Send this certificate whatever the server asks for, so the server's check is what
	// decides.
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	return &http.Client{Transport: &http.Transport{TLSClientConfig: c, DisableKeepAlives: true}, Timeout: 20 * time.Second}
}

func httpGet(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// twoSites makes the certificate directories of two sites the way the README says: the
// replica site dr holds the CA (and certificates of its own, a primary one too); the primary
// site hq sends a request that dr signs.
func twoSites(t *testing.T) (dr, hq string) {
	t.Helper()
	cd := scratchDir(t, "drfs-e2e-ids-")
	dr, hq, signed := filepath.Join(cd, "dr"), filepath.Join(cd, "hq"), filepath.Join(cd, "signed")
	mustRun(t, time.Minute, drfsBin, "certs", "init", "--out", dr, "--site", "dr")
	mustRun(t, time.Minute, drfsBin, "certs", "request", "--out", hq, "--site", "hq")
	mustRun(t, time.Minute, drfsBin, "certs", "sign", "--ca", dr, "--site", "hq", "--out", signed, filepath.Join(hq, "hq.csr"))
	for _, f := range []string{"ca.pem", "primary.pem", "replica.pem"} {
		b, err := os.ReadFile(filepath.Join(signed, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hq, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dr, hq
}

// TestReplication_IdentitiesAndBinding sets up two sites the way the README says (the CA
// stays on the replica site, the primary site sends a request), replicates, and checks that
// the replica's own certificate cannot act as a client, that another primary of the same CA
// is refused the bound volume, and that one-byte block hashes are refused.
func TestReplication_IdentitiesAndBinding(t *testing.T) {
	requireTools(t)
	requireBuilt(t, drfsBin, "drfs (cmd/drfs)")
	dr, hq := twoSites(t)
	if _, err := os.Stat(filepath.Join(hq, "ca-key.pem")); err == nil {
		t.Fatal("the primary site holds the CA key")
	}

	r := startReplica(t, "", dr)
	m := testMountWith(t, MountOptions{Volume: "idvol", Args: []string{"--replica", r.URL(), "--certs", hq, "--interval", "continuous"}})
	mustWriteFile(t, filepath.Join(m.Mnt, "secret.txt"), []byte("the quick brown fox"), 0o644)
	m.Sync(time.Minute)
	requireTreesEqual(t, m.Src, r.DataDir("idvol"))

	base := r.URL() + "/v1/volumes/idvol"
	good := certClient(t, hq, filepath.Join(hq, "primary.pem"), hq)
	if code, body, err := httpGet(good, base+"/describe?path=secret.txt&block=4096"); err != nil || code != 200 {
		t.Errorf("bound primary's describe: %d %s %v", code, body, err)
	}
	if code, body, err := httpGet(good, base+"/describe?path=secret.txt&block=1"); err != nil || code != http.StatusBadRequest {
		t.Errorf("describe block=1: %d %s %v, want 400", code, body, err)
	}

	// The replica's own certificate as a client: refused in the handshake.
	for _, c := range []struct{ name, cert, keyDir string }{
		{"replica site's replica certificate", filepath.Join(dr, "replica.pem"), dr},
		{"primary site's replica certificate", filepath.Join(hq, "replica.pem"), hq},
	} {
		if code, body, err := httpGet(certClient(t, dr, c.cert, c.keyDir), base); err == nil {
			t.Errorf("%s accepted as a client: %d %s", c.name, code, body)
		}
	}

	// Another primary of the same CA (the replica site's own): 403 on the bound volume.
	other := certClient(t, dr, filepath.Join(dr, "primary.pem"), dr)
	for _, p := range []string{"", "/describe?path=secret.txt&block=4096", "/points", "/list?path=."} {
		code, body, err := httpGet(other, base+p)
		if err != nil || code != http.StatusForbidden || !strings.Contains(body, `\"hq\"`) {
			t.Errorf("GET %s as primary dr: %d %s %v, want 403 naming hq", p, code, body, err)
		}
	}
	resp, err := other.Post(base+"/promote", "application/json", strings.NewReader(`{"planned":true,"expect_seq":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("promote as primary dr: %d, want 403", resp.StatusCode)
	}
	if b, err := os.ReadFile(filepath.Join(r.Dir, "idvol", "state", "state.json")); err != nil || !strings.Contains(string(b), `"bound_primary": "hq"`) {
		t.Errorf("replica state does not record the binding to hq: %v\n%s", err, b)
	}
}
