package tlsutil_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"drfs/tlsutil"
)

// MustInit makes a fresh CA and the leaf certificates of site in a temp dir.
func MustInit(tb testing.TB, site string, hosts ...string) (string, tlsutil.Files) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "tls")
	files, err := tlsutil.Init(dir, site, hosts, false)
	if err != nil {
		tb.Fatal(err)
	}
	return dir, files
}

// MustGenerate is MustInit for site "a".
func MustGenerate(tb testing.TB, hosts ...string) (string, tlsutil.Files) {
	tb.Helper()
	return MustInit(tb, "a", hosts...)
}

func readCert(tb testing.TB, name string) *x509.Certificate {
	tb.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		tb.Fatalf("%s: no CERTIFICATE block", name)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// testServer starts an HTTPS server with cfg whose handler answers with the
// client's identity. It counts the requests that reached the handler.
func testServer(t *testing.T, cfg *tls.Config) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		id, err := tlsutil.PeerIdentity(r.TLS)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		io.WriteString(w, id.String())
	}))
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &hits
}

func get(cfg *tls.Config, url string) (string, error) {
	c := &http.Client{
		Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func TestInit(t *testing.T) {
	dir, files := MustInit(t, "dr", "replica.example.net", "10.1.2.3", "[fd00::7]", "Replica.Example.NET.", "localhost")

	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir: %v %v, want mode 0700", fi.Mode(), err)
	}
	for _, tc := range []struct {
		name string
		mode fs.FileMode
	}{
		{files.CA, 0o644}, {files.CAKey, 0o600}, {files.Key, 0o600},
		{files.PrimaryCert, 0o644}, {files.ReplicaCert, 0o644},
	} {
		fi, err := os.Stat(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != tc.mode {
			t.Errorf("%s: mode %v, want %v", filepath.Base(tc.name), fi.Mode().Perm(), tc.mode)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 5 {
		t.Errorf("dir has %d entries, want 5 (temp files left?)", len(ents))
	}

	ca := readCert(t, files.CA)
	if !ca.IsCA || ca.CheckSignatureFrom(ca) != nil {
		t.Fatal("CA is not a self-signed CA")
	}
	if d := time.Until(ca.NotAfter); d < 9*365*24*time.Hour || d > 11*365*24*time.Hour {
		t.Errorf("CA valid for %v, want ~10 years", d)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	for _, tc := range []struct {
		file, cn, uri string
		eku           x509.ExtKeyUsage
	}{
		{files.PrimaryCert, "drfs-primary dr", "drfs://dr/primary", x509.ExtKeyUsageClientAuth},
		{files.ReplicaCert, "drfs-replica dr", "drfs://dr/replica", x509.ExtKeyUsageServerAuth},
	} {
		c := readCert(t, tc.file)
		if c.Subject.CommonName != tc.cn {
			t.Errorf("CN %q, want %q", c.Subject.CommonName, tc.cn)
		}
		if c.IsCA {
			t.Errorf("%s: leaf is a CA", tc.cn)
		}
		if d := time.Until(c.NotAfter); d < 4*365*24*time.Hour || d > 6*365*24*time.Hour {
			t.Errorf("%s valid for %v, want ~5 years", tc.cn, d)
		}
		if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{tc.eku}) {
			t.Errorf("%s: EKU %v, want only %v", tc.cn, c.ExtKeyUsage, tc.eku)
		}
		if len(c.URIs) != 1 || c.URIs[0].String() != tc.uri {
			t.Errorf("%s: URIs %v, want %s", tc.cn, c.URIs, tc.uri)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tc.eku}}); err != nil {
			t.Errorf("%s: verify: %v", tc.cn, err)
		}
	}
	c := readCert(t, files.ReplicaCert)
	if got, want := c.DNSNames, []string{"replica.example.net", "localhost"}; !slices.Equal(got, want) {
		t.Errorf("DNS SANs %v, want %v", got, want)
	}
	var ips []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"10.1.2.3", "fd00::7", "127.0.0.1", "::1"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs %v, want %v", ips, want)
	}
	for _, host := range []string{"replica.example.net", "localhost", "127.0.0.1", "::1", "10.1.2.3"} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
}

func TestInit_InvalidHostOrSite(t *testing.T) {
	for _, tc := range []struct{ site, host, want string }{
		{"a", "host:8443", "invalid host"}, {"a", "127.0.0.1:443", "invalid host"},
		{"a", "a b", "invalid host"}, {"a", "http://x", "invalid host"},
		{"", "", "invalid site"}, {"Paris", "", "invalid site"}, {"a/b", "", "invalid site"}, {"-a", "", "invalid site"},
	} {
		dir := filepath.Join(t.TempDir(), "tls")
		if _, err := tlsutil.Init(dir, tc.site, []string{tc.host}, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("site %q host %q: err %v, want %s", tc.site, tc.host, err, tc.want)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("site %q host %q: dir created despite the error", tc.site, tc.host)
		}
	}
}

func TestInit_RefusesOverwrite(t *testing.T) {
	dir, files := MustGenerate(t)
	before, _ := os.ReadFile(files.Key)

	if _, err := tlsutil.Init(dir, "a", nil, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Init: err %v, want fs.ErrExist", err)
	}
	if after, _ := os.ReadFile(files.Key); string(after) != string(before) {
		t.Fatal("key changed by a refused Init")
	}

	// One stray file is enough to refuse, and nothing else is written.
	dir2 := filepath.Join(t.TempDir(), "tls")
	os.MkdirAll(dir2, 0o700)
	os.WriteFile(filepath.Join(dir2, tlsutil.KeyFile), []byte("x"), 0o600)
	if _, err := tlsutil.Init(dir2, "a", nil, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Init over one file: err %v, want fs.ErrExist", err)
	}
	if ents, _ := os.ReadDir(dir2); len(ents) != 1 {
		t.Fatalf("refused Init wrote %d files", len(ents)-1)
	}

	// force replaces, and a loosened key file gets 0600 back.
	if err := os.Chmod(files.Key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsutil.Init(dir, "a", nil, true); err != nil {
		t.Fatalf("forced Init: %v", err)
	}
	if after, _ := os.ReadFile(files.Key); string(after) == string(before) {
		t.Fatal("forced Init kept the old key")
	}
	if fi, _ := os.Stat(files.Key); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v after force, want 0600", fi.Mode().Perm())
	}
	if _, _, err := tlsutil.LoadClient(dir); err != nil {
		t.Fatalf("LoadClient after force: %v", err)
	}
}

// TestRequestSign: the second site makes its own key and a request; the CA site signs it
// without its CA key leaving; each site's primary then reaches the other's replica, and
// each side sees the other's identity.
func TestRequestSign(t *testing.T) {
	caDir, _ := MustInit(t, "dr")
	hq := filepath.Join(t.TempDir(), "hq")
	req, err := tlsutil.Request(hq, "hq", []string{"hq.example.net"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlsutil.Request(hq, "hq", nil, false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Request: err %v, want fs.ErrExist", err)
	}
	if _, err := os.Stat(filepath.Join(hq, tlsutil.CAKeyFile)); err == nil {
		t.Fatal("Request wrote a CA key")
	}
	out := filepath.Join(t.TempDir(), "signed")
	if _, err := tlsutil.Sign(caDir, req.CSR, "paris", out, false); err == nil || !strings.Contains(err.Error(), `for site "hq", not "paris"`) {
		t.Errorf("Sign under another name: err %v", err)
	}
	own := filepath.Join(t.TempDir(), "own")
	if r2, err := tlsutil.Request(own, "dr", nil, false); err != nil {
		t.Fatal(err)
	} else if _, err := tlsutil.Sign(caDir, r2.CSR, "dr", out, false); err == nil || !strings.Contains(err.Error(), "CA site's own name") {
		t.Errorf("Sign of the CA site's own name: err %v", err)
	}
	if _, err := tlsutil.Sign(hq, req.CSR, "hq", out, false); err == nil || !strings.Contains(err.Error(), "CA") {
		t.Errorf("Sign without a CA: err %v", err)
	}
	sg, err := tlsutil.Sign(caDir, req.CSR, "hq", out, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sg.Hosts, "hq.example.net") {
		t.Errorf("signed hosts %v, want hq.example.net", sg.Hosts)
	}
	for _, f := range []string{tlsutil.CAFile, tlsutil.PrimaryCertFile, tlsutil.ReplicaCertFile} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(hq, f), b, 0o644)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 3 {
		t.Errorf("Sign wrote %d files, want 3 (no key)", len(ents))
	}

	drServer, drID, err := tlsutil.LoadServer(caDir)
	if err != nil || drID != (tlsutil.Identity{Site: "dr", Role: "replica"}) {
		t.Fatalf("LoadServer dr: %v %v", drID, err)
	}
	hqServer, _, err := tlsutil.LoadServer(hq)
	if err != nil {
		t.Fatal(err)
	}
	drClient, _, err := tlsutil.LoadClient(caDir)
	if err != nil {
		t.Fatal(err)
	}
	hqClient, hqID, err := tlsutil.LoadClient(hq)
	if err != nil || hqID != (tlsutil.Identity{Site: "hq", Role: "primary"}) {
		t.Fatalf("LoadClient hq: %v %v", hqID, err)
	}
	drSrv, _ := testServer(t, drServer)
	hqSrv, _ := testServer(t, hqServer)
	if body, err := get(hqClient, drSrv.URL); err != nil || body != `primary "hq"` {
		t.Errorf("hq -> dr: %q %v", body, err)
	}
	if body, err := get(drClient, hqSrv.URL); err != nil || body != `primary "dr"` {
		t.Errorf("dr -> hq: %q %v", body, err)
	}
}

// TestConfig_RoleBound: a replica's certificate is refused as a client, a primary's as a
// server, even though both chain to the CA.
func TestConfig_RoleBound(t *testing.T) {
	dir, f := MustGenerate(t)
	scfg, _, err := tlsutil.LoadServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, hits := testServer(t, scfg)
	good, _, err := tlsutil.LoadClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The replica's own certificate, forced onto the wire as a client certificate.
	asClient := good.Clone()
	replicaCert := scfg.Certificates[0]
	asClient.Certificates = nil
	asClient.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &replicaCert, nil }
	if _, err := get(asClient, srv.URL); err == nil {
		t.Error("the replica's certificate was accepted as a client")
	}
	if hits.Load() != 0 {
		t.Error("a request with the replica's certificate reached the handler")
	}
	if _, err := tlsutil.ClientConfig(f.CA, f.ReplicaCert, f.Key, ""); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("ClientConfig with the replica certificate: err %v", err)
	}
	if _, err := tlsutil.ServerConfig(f.CA, f.PrimaryCert, f.Key); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("ServerConfig with the primary certificate: err %v", err)
	}
}

func TestConfig_MutualTLS(t *testing.T) {
	_, f := MustGenerate(t)
	scfg, err := tlsutil.ServerConfig(f.CA, f.ReplicaCert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv, hits := testServer(t, scfg)

	ccfg, err := tlsutil.ClientConfig(f.CA, f.PrimaryCert, f.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	body, err := get(ccfg, srv.URL)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	if body != `primary "a"` {
		t.Fatalf("server saw client %q, want primary \"a\"", body)
	}

	// An explicit server name must be among the SANs.
	named, _ := tlsutil.ClientConfig(f.CA, f.PrimaryCert, f.Key, "localhost")
	if _, err := get(named, srv.URL); err != nil {
		t.Fatalf("GET with ServerName localhost: %v", err)
	}
	wrong, _ := tlsutil.ClientConfig(f.CA, f.PrimaryCert, f.Key, "elsewhere.example")
	if _, err := get(wrong, srv.URL); err == nil {
		t.Fatal("GET with a ServerName not in the SANs succeeded")
	}
	if hits.Load() != 2 {
		t.Fatalf("handler hits %d, want 2", hits.Load())
	}
}

func TestConfig_Rejects(t *testing.T) {
	_, f := MustGenerate(t)
	_, other := MustGenerate(t) // a second, unrelated deployment

	scfg, err := tlsutil.ServerConfig(f.CA, f.ReplicaCert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv, hits := testServer(t, scfg)
	good, err := tlsutil.ClientConfig(f.CA, f.PrimaryCert, f.Key, "")
	if err != nil {
		t.Fatal(err)
	}

	// A client that trusts our CA but presents a certificate from another CA.
	foreign, err := tlsutil.ClientConfig(other.CA, other.PrimaryCert, other.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	foreign.RootCAs = good.RootCAs
	// The server's CertificateRequest names its CA, and crypto/tls would
	// then send no certificate at all; force the foreign one onto the wire
	// so the server's verification is what rejects it.
	foreignCert := foreign.Certificates[0]
	foreign.Certificates = nil
	foreign.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &foreignCert, nil
	}

	noCert := good.Clone()
	noCert.Certificates = nil

	tls12 := good.Clone()
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		want string
	}{
		{"client cert from another CA", foreign, "remote error: tls: unknown certificate authority"},
		{"no client cert", noCert, "remote error: tls: certificate required"},
		{"TLS 1.2", tls12, "remote error: tls: protocol version not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := get(tc.cfg, srv.URL)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("GET: err %v, want a handshake error", err)
			}
			if testing.Verbose() {
				t.Logf("refused: %v", err)
			}
		})
	}
	if hits.Load() != 0 {
		t.Fatalf("rejected clients reached the handler %d times", hits.Load())
	}

	// A server whose certificate comes from another CA is refused by the client.
	ocfg, err := tlsutil.ServerConfig(other.CA, other.ReplicaCert, other.Key)
	if err != nil {
		t.Fatal(err)
	}
	osrv, ohits := testServer(t, ocfg)
	_, err = get(good, osrv.URL)
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("GET foreign server: err %v, want *tls.CertificateVerificationError", err)
	}
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("GET foreign server: err %v, want x509.UnknownAuthorityError", err)
	}
	if ohits.Load() != 0 {
		t.Fatal("foreign server handled a request")
	}
}

// A raw tls.Dial sees the client certificate rejection too, not only net/http.
func TestConfig_RawConnRejectsForeignClient(t *testing.T) {
	_, f := MustGenerate(t)
	_, other := MustGenerate(t)
	scfg, _ := tlsutil.ServerConfig(f.CA, f.ReplicaCert, f.Key)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		srvErr <- c.(*tls.Conn).Handshake()
	}()

	ccfg, _ := tlsutil.ClientConfig(other.CA, other.PrimaryCert, other.Key, "127.0.0.1")
	good, _ := tlsutil.ClientConfig(f.CA, f.PrimaryCert, f.Key, "")
	ccfg.RootCAs = good.RootCAs
	foreignCert := ccfg.Certificates[0]
	ccfg.Certificates = nil
	ccfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &foreignCert, nil
	}
	c, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
	if err == nil {
		// In TLS 1.3 the client finishes first; the server's alert arrives
		// on the first read.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Fatalf("client: err %v, want an unknown certificate authority alert", err)
	}
	var unknown x509.UnknownAuthorityError
	if err := <-srvErr; !errors.As(err, &unknown) {
		t.Fatalf("server handshake: err %v, want x509.UnknownAuthorityError", err)
	}
}

func TestConfig_LoadErrors(t *testing.T) {
	dir, f := MustGenerate(t)
	_, other := MustGenerate(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("not pem"), 0o600)
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name          string
		ca, cert, key string
		want          string
	}{
		{"missing CA", missing, f.PrimaryCert, f.Key, "tlsutil: read CA " + missing + ": "},
		{"garbage CA", garbage, f.PrimaryCert, f.Key, "tlsutil: read CA " + garbage + ": no PEM certificate"},
		{"missing key", f.CA, f.PrimaryCert, missing, "tlsutil: load key pair"},
		{"mismatched key", f.CA, f.PrimaryCert, other.Key, "tlsutil: load key pair"},
		{"other CA's cert", f.CA, other.PrimaryCert, other.Key,
			"tlsutil: certificate " + other.PrimaryCert + " is not signed by the CA " + f.CA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tlsutil.ClientConfig(tc.ca, tc.cert, tc.key, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ClientConfig: err %v, want %q", err, tc.want)
			}
		})
	}
	if _, _, err := tlsutil.LoadClient(t.TempDir()); err == nil || !strings.Contains(err.Error(), "tlsutil: read CA") {
		t.Errorf("LoadClient empty dir: err %v", err)
	}
}

func TestConfig_Settings(t *testing.T) {
	dir, _ := MustGenerate(t)
	s, _, err := tlsutil.LoadServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := tlsutil.LoadClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.MinVersion != tls.VersionTLS13 || c.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion server %x client %x, want TLS 1.3", s.MinVersion, c.MinVersion)
	}
	if s.ClientAuth != tls.RequireAndVerifyClientCert || s.ClientCAs == nil {
		t.Errorf("server ClientAuth %v, ClientCAs %v", s.ClientAuth, s.ClientCAs)
	}
	if c.RootCAs == nil || c.InsecureSkipVerify || c.ServerName != "" {
		t.Errorf("client RootCAs %v InsecureSkipVerify %v ServerName %q", c.RootCAs, c.InsecureSkipVerify, c.ServerName)
	}
	if len(s.Certificates) != 1 || s.Certificates[0].Leaf.Subject.CommonName != "drfs-replica a" {
		t.Errorf("server does not present drfs-replica a")
	}
	if len(c.Certificates) != 1 || c.Certificates[0].Leaf.Subject.CommonName != "drfs-primary a" {
		t.Errorf("client does not present drfs-primary a")
	}
}
