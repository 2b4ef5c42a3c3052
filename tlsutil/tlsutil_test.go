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

// MustGenerate makes a fresh CA and leaf certificates in a temp dir.
func MustGenerate(tb testing.TB, hosts ...string) (string, tlsutil.Files) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "tls")
	files, err := tlsutil.Generate(dir, hosts, false)
	if err != nil {
		tb.Fatal(err)
	}
	return dir, files
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
// client certificate's CN. It counts the requests that reached the handler.
func testServer(t *testing.T, cfg *tls.Config) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
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

func TestGenerate(t *testing.T) {
	dir, files := MustGenerate(t, "replica.example.net", "10.1.2.3", "[fd00::7]", "Replica.Example.NET.", "localhost")

	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir: %v %v, want mode 0700", fi.Mode(), err)
	}
	for _, tc := range []struct {
		name string
		mode fs.FileMode
	}{
		{files.CA, 0o644}, {files.CAKey, 0o600},
		{files.PrimaryCert, 0o644}, {files.PrimaryKey, 0o600},
		{files.ReplicaCert, 0o644}, {files.ReplicaKey, 0o600},
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
	if len(ents) != 6 {
		t.Errorf("dir has %d entries, want 6 (temp files left?)", len(ents))
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

	for _, tc := range []struct{ file, cn string }{
		{files.PrimaryCert, "drfs-primary"},
		{files.ReplicaCert, "drfs-replica"},
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
		if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
			t.Errorf("%s: EKU %v, want ServerAuth and ClientAuth", tc.cn, c.ExtKeyUsage)
		}
		if got, want := c.DNSNames, []string{"replica.example.net", "localhost"}; !slices.Equal(got, want) {
			t.Errorf("%s: DNS SANs %v, want %v", tc.cn, got, want)
		}
		var ips []string
		for _, ip := range c.IPAddresses {
			ips = append(ips, ip.String())
		}
		if want := []string{"10.1.2.3", "fd00::7", "127.0.0.1", "::1"}; !slices.Equal(ips, want) {
			t.Errorf("%s: IP SANs %v, want %v", tc.cn, ips, want)
		}
		for _, host := range []string{"replica.example.net", "localhost", "127.0.0.1", "::1", "10.1.2.3"} {
			_, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if err != nil {
				t.Errorf("%s: verify for %s: %v", tc.cn, host, err)
			}
		}
	}
}

func TestGenerate_InvalidHost(t *testing.T) {
	for _, h := range []string{"host:8443", "127.0.0.1:443", "a b", "http://x"} {
		dir := filepath.Join(t.TempDir(), "tls")
		if _, err := tlsutil.Generate(dir, []string{h}, false); err == nil || !strings.Contains(err.Error(), "invalid host") {
			t.Errorf("host %q: err %v, want invalid host", h, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("host %q: dir created despite the error", h)
		}
	}
}

func TestGenerate_RefusesOverwrite(t *testing.T) {
	dir, files := MustGenerate(t)
	before, _ := os.ReadFile(files.PrimaryKey)

	if _, err := tlsutil.Generate(dir, nil, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Generate: err %v, want fs.ErrExist", err)
	}
	if after, _ := os.ReadFile(files.PrimaryKey); string(after) != string(before) {
		t.Fatal("key changed by a refused Generate")
	}

	// One stray file is enough to refuse, and nothing else is written.
	dir2 := filepath.Join(t.TempDir(), "tls")
	os.MkdirAll(dir2, 0o700)
	os.WriteFile(filepath.Join(dir2, tlsutil.ReplicaKeyFile), []byte("x"), 0o600)
	if _, err := tlsutil.Generate(dir2, nil, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Generate over one file: err %v, want fs.ErrExist", err)
	}
	if ents, _ := os.ReadDir(dir2); len(ents) != 1 {
		t.Fatalf("refused Generate wrote %d files", len(ents)-1)
	}

	// force replaces, and a loosened key file gets 0600 back.
	if err := os.Chmod(files.PrimaryKey, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsutil.Generate(dir, nil, true); err != nil {
		t.Fatalf("forced Generate: %v", err)
	}
	if after, _ := os.ReadFile(files.PrimaryKey); string(after) == string(before) {
		t.Fatal("forced Generate kept the old key")
	}
	if fi, _ := os.Stat(files.PrimaryKey); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v after force, want 0600", fi.Mode().Perm())
	}
	if _, _, err := tlsutil.LoadDir(dir, "primary"); err != nil {
		t.Fatalf("LoadDir after force: %v", err)
	}
}

func TestConfig_MutualTLS(t *testing.T) {
	dir, f := MustGenerate(t)
	scfg, err := tlsutil.ServerConfig(f.CA, f.ReplicaCert, f.ReplicaKey)
	if err != nil {
		t.Fatal(err)
	}
	srv, hits := testServer(t, scfg)

	ccfg, err := tlsutil.ClientConfig(f.CA, f.PrimaryCert, f.PrimaryKey, "")
	if err != nil {
		t.Fatal(err)
	}
	body, err := get(ccfg, srv.URL)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	if body != "drfs-primary" {
		t.Fatalf("server saw client %q, want drfs-primary", body)
	}

	// An explicit server name must be among the SANs.
	named, _ := tlsutil.ClientConfig(f.CA, f.PrimaryCert, f.PrimaryKey, "localhost")
	if _, err := get(named, srv.URL); err != nil {
		t.Fatalf("GET with ServerName localhost: %v", err)
	}
	wrong, _ := tlsutil.ClientConfig(f.CA, f.PrimaryCert, f.PrimaryKey, "elsewhere.example")
	if _, err := get(wrong, srv.URL); err == nil {
		t.Fatal("GET with a ServerName not in the SANs succeeded")
	}

	// LoadDir's primary client talks to the replica's server, and the
	// replica's client to a primary server.
	_, pc, err := tlsutil.LoadDir(dir, "primary")
	if err != nil {
		t.Fatal(err)
	}
	if body, err := get(pc, srv.URL); err != nil || body != "drfs-primary" {
		t.Fatalf("LoadDir primary client: %q %v", body, err)
	}
	ps, _, err := tlsutil.LoadDir(dir, "primary")
	if err != nil {
		t.Fatal(err)
	}
	psrv, _ := testServer(t, ps)
	_, rc, err := tlsutil.LoadDir(dir, "replica")
	if err != nil {
		t.Fatal(err)
	}
	if body, err := get(rc, psrv.URL); err != nil || body != "drfs-replica" {
		t.Fatalf("LoadDir replica client: %q %v", body, err)
	}
	if hits.Load() != 3 {
		t.Fatalf("handler hits %d, want 3", hits.Load())
	}
}

func TestConfig_Rejects(t *testing.T) {
	_, f := MustGenerate(t)
	_, other := MustGenerate(t) // a second, unrelated deployment

	scfg, err := tlsutil.ServerConfig(f.CA, f.ReplicaCert, f.ReplicaKey)
	if err != nil {
		t.Fatal(err)
	}
	srv, hits := testServer(t, scfg)
	good, err := tlsutil.ClientConfig(f.CA, f.PrimaryCert, f.PrimaryKey, "")
	if err != nil {
		t.Fatal(err)
	}

	// A client that trusts our CA but presents a certificate from another CA.
	foreign, err := tlsutil.ClientConfig(other.CA, other.PrimaryCert, other.PrimaryKey, "")
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
	ocfg, err := tlsutil.ServerConfig(other.CA, other.ReplicaCert, other.ReplicaKey)
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
	scfg, _ := tlsutil.ServerConfig(f.CA, f.ReplicaCert, f.ReplicaKey)
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

	ccfg, _ := tlsutil.ClientConfig(other.CA, other.PrimaryCert, other.PrimaryKey, "127.0.0.1")
	good, _ := tlsutil.ClientConfig(f.CA, f.PrimaryCert, f.PrimaryKey, "")
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
		name                  string
		ca, cert, key, server string
		want                  string
	}{
		{"missing CA", missing, f.PrimaryCert, f.PrimaryKey, "", "tlsutil: read CA " + missing + ": "},
		{"garbage CA", garbage, f.PrimaryCert, f.PrimaryKey, "", "tlsutil: read CA " + garbage + ": no PEM certificate"},
		{"missing key", f.CA, f.PrimaryCert, missing, "", "tlsutil: load key pair"},
		{"mismatched key", f.CA, f.PrimaryCert, f.ReplicaKey, "", "tlsutil: load key pair"},
		{"other CA's cert", f.CA, other.PrimaryCert, other.PrimaryKey, "",
			"tlsutil: certificate " + other.PrimaryCert + " is not signed by the CA " + f.CA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tlsutil.ServerConfig(tc.ca, tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ServerConfig: err %v, want %q", err, tc.want)
			}
			if _, err := tlsutil.ClientConfig(tc.ca, tc.cert, tc.key, tc.server); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ClientConfig: err %v, want %q", err, tc.want)
			}
		})
	}
	if _, _, err := tlsutil.LoadDir(dir, "witness"); err == nil || !strings.Contains(err.Error(), `unknown role "witness"`) {
		t.Errorf("LoadDir bad role: err %v", err)
	}
	if _, _, err := tlsutil.LoadDir(t.TempDir(), "primary"); err == nil || !strings.Contains(err.Error(), "tlsutil: read CA") {
		t.Errorf("LoadDir empty dir: err %v", err)
	}
}

func TestConfig_Settings(t *testing.T) {
	dir, _ := MustGenerate(t)
	s, c, err := tlsutil.LoadDir(dir, "replica")
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
	if len(s.Certificates) != 1 || s.Certificates[0].Leaf.Subject.CommonName != "drfs-replica" {
		t.Errorf("server does not present drfs-replica")
	}
	if len(c.Certificates) != 1 || c.Certificates[0].Leaf.Subject.CommonName != "drfs-replica" {
		t.Errorf("client does not present drfs-replica")
	}
}
