// Package tlsutil creates and loads the certificates drfs uses for mutual TLS
// between a primary and its replica.
//
// # Identities
//
// Every site has one private key and a name (its identity, e.g. "paris"). A
// site holds up to two leaf certificates for that key, one per role, and the
// role is part of the certificate twice: in the extended key usage and in a
// URI SAN drfs://SITE/ROLE.
//
//	replica.pem   ServerAuth only, URI drfs://SITE/replica, the host SANs:
//	              what drfs serve presents
//	primary.pem   ClientAuth only, URI drfs://SITE/primary: what drfs mount
//	              presents when it dials a replica
//
// crypto/tls checks the usage on both ends, so a replica's certificate cannot
// be used as a client, nor a primary's as a server; the replica server also
// reads the identity of the client (PeerIdentity) to serve each volume only to
// the primary it is bound to, and the client checks that it reached a replica.
// Both sides trust only the deployment's CA, never the system roots.
//
// # Setting up two sites
//
// The CA lives on one site, the one to protect (normally the replica site),
// and its key never leaves it:
//
//	site A (CA):  Init     -> ca.pem ca-key.pem key.pem primary.pem replica.pem
//	site B:       Request  -> key.pem SITE.csr            (carry SITE.csr to A)
//	site A:       Sign     -> OUT/ca.pem OUT/primary.pem OUT/replica.pem
//	                          (carry the three certificates back into B's dir)
//
// Both sites get both roles so that a failover, which swaps them, needs no
// new certificates.
//
// # Files
//
// All PEM; keys are ECDSA P-256 in PKCS #8 with mode 0600.
//
//	ca.pem        CA certificate, self-signed, 10 years
//	ca-key.pem    CA private key, only on the site that ran Init
//	key.pem       this site's private key
//	primary.pem   this site's primary (client) certificate, 5 years
//	replica.pem   this site's replica (server) certificate, 5 years
//	SITE.csr      the request Request writes for the CA site to sign
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"drfs/internal/fsutil"
)

// File names inside a certificate directory.
const (
	CAFile          = "ca.pem"
	CAKeyFile       = "ca-key.pem"
	KeyFile         = "key.pem"
	PrimaryCertFile = "primary.pem"
	ReplicaCertFile = "replica.pem"
)

// Roles of a leaf certificate; its CN is "drfs-" + role + " " + site.
const (
	RolePrimary = "primary"
	RoleReplica = "replica"
)

// IdentityScheme is the scheme of the URI SAN that names a leaf's site and role:
// drfs://SITE/ROLE.
const IdentityScheme = "drfs"

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 5 * 365 * 24 * time.Hour
	// backdate tolerates clocks that are a little behind the one that
	// generated the certificates.
	backdate = time.Hour
)

// defaultHosts are always in the leaf SANs so loopback tests and
// single-machine setups work without listing them.
var defaultHosts = []string{"127.0.0.1", "::1", "localhost"}

// pemFile is one file to write.
type pemFile struct {
	name string
	mode os.FileMode
	pem  []byte
}

// Files are the paths of a certificate directory's files.
type Files struct {
	CA, CAKey, Key, PrimaryCert, ReplicaCert string
	// CSR is the request written by Request ("" otherwise).
	CSR string
}

func filesIn(dir string) Files {
	return Files{
		CA:          filepath.Join(dir, CAFile),
		CAKey:       filepath.Join(dir, CAKeyFile),
		Key:         filepath.Join(dir, KeyFile),
		PrimaryCert: filepath.Join(dir, PrimaryCertFile),
		ReplicaCert: filepath.Join(dir, ReplicaCertFile),
	}
}

// Identity is who a leaf certificate speaks for: a site in a role.
type Identity struct {
	Site string
	Role string
}

func (id Identity) String() string { return id.Role + " " + strconv.Quote(id.Site) }

func (id Identity) uri() *url.URL {
	return &url.URL{Scheme: IdentityScheme, Host: id.Site, Path: "/" + id.Role}
}

var siteRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidSite checks a site name: lower-case letters, digits and inner dashes, at most 63
// characters (a DNS label, so it fits a URI host).
func ValidSite(site string) error {
	if !siteRE.MatchString(site) {
		return fmt.Errorf("tlsutil: invalid site name %q: want lower-case letters, digits and dashes (a DNS label)", site)
	}
	return nil
}

// CertIdentity reads the drfs identity of a leaf certificate. A certificate without exactly
// one drfs:// URI SAN of a known role (for example one made by an older drfs) has none.
func CertIdentity(c *x509.Certificate) (Identity, error) {
	var ids []Identity
	for _, u := range c.URIs {
		if u.Scheme != IdentityScheme {
			continue
		}
		id := Identity{Site: u.Host, Role: strings.TrimPrefix(u.Path, "/")}
		if ValidSite(id.Site) != nil || (id.Role != RolePrimary && id.Role != RoleReplica) {
			return Identity{}, fmt.Errorf("tlsutil: certificate %q has a malformed drfs identity %q", c.Subject.CommonName, u)
		}
		ids = append(ids, id)
	}
	switch len(ids) {
	case 0:
		return Identity{}, fmt.Errorf("tlsutil: certificate %q carries no drfs identity (made by an older drfs certs? re-issue it with drfs certs init/request/sign)", c.Subject.CommonName)
	case 1:
		return ids[0], nil
	}
	return Identity{}, fmt.Errorf("tlsutil: certificate %q carries %d drfs identities", c.Subject.CommonName, len(ids))
}

// PeerIdentity returns the identity of the verified peer certificate of a TLS connection.
func PeerIdentity(cs *tls.ConnectionState) (Identity, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Identity{}, errors.New("tlsutil: no peer certificate")
	}
	if len(cs.VerifiedChains) == 0 {
		return Identity{}, errors.New("tlsutil: peer certificate not verified")
	}
	return CertIdentity(cs.PeerCertificates[0])
}

// refuseExisting fails with an error wrapping fs.ErrExist if any of names exists.
func refuseExisting(names ...string) error {
	for _, name := range names {
		if _, err := os.Lstat(name); err == nil {
			return fmt.Errorf("tlsutil: %s already exists (use force to overwrite): %w", name, fs.ErrExist)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("tlsutil: %w", err)
		}
	}
	return nil
}

func writeAll(dir string, out []pemFile, force bool) error {
	for _, o := range out {
		if err := writeFile(o.name, o.pem, o.mode, force); err != nil {
			return err
		}
	}
	return fsutil.SyncDir(dir)
}

// Init creates, in dir (created 0700 if missing), a new CA, this site's key and its primary
// and replica certificates for site. The replica certificate's SANs are hosts (IP addresses
// or DNS names, without ports) plus 127.0.0.1, ::1 and localhost.
//
// Without force, Init fails with an error wrapping fs.ErrExist if any of its files already
// exists, and writes nothing. Each file is written to a temporary name, fsynced and renamed
// into place, so a crash leaves either the old or the new file, never a torn one. The files
// are not replaced as one unit: a crash in the middle of a forced Init can leave a mix of old
// and new files, which the loaders then reject as not signed by the CA.
func Init(dir, site string, hosts []string, force bool) (Files, error) {
	ips, dnsNames, files, err := siteDir(dir, site, hosts)
	if err != nil {
		return Files{}, err
	}
	if !force {
		if err := refuseExisting(files.CA, files.CAKey, files.Key, files.PrimaryCert, files.ReplicaCert); err != nil {
			return Files{}, err
		}
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("tlsutil: generate CA key: %w", err)
	}
	caSerial, err := newSerial()
	if err != nil {
		return Files{}, err
	}
	// The serial in the name tells two deployments' CAs apart in
	// "unknown authority" errors.
	caID := caSerial.Text(16)
	caID = caID[:min(8, len(caID))]
	caTmpl := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{CommonName: "drfs CA " + caID + " (" + site + ")", Organization: []string{"drfs"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return Files{}, fmt.Errorf("tlsutil: create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Files{}, fmt.Errorf("tlsutil: parse CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("tlsutil: generate site key: %w", err)
	}
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return Files{}, err
	}
	siteKeyPEM, err := keyPEM(key)
	if err != nil {
		return Files{}, err
	}
	out := []pemFile{
		{files.CA, 0o644, certPEM(caDER)},
		{files.CAKey, 0o600, caKeyPEM},
		{files.Key, 0o600, siteKeyPEM},
	}
	leaves, err := newLeaves(site, &key.PublicKey, ips, dnsNames, now, caCert, caKey, files)
	if err != nil {
		return Files{}, err
	}
	if err := writeAll(dir, append(out, leaves...), force); err != nil {
		return Files{}, err
	}
	return files, nil
}

// newLeaves issues the primary and replica certificates of site for pub.
func newLeaves(site string, pub *ecdsa.PublicKey, ips []net.IP, dnsNames []string, now time.Time, ca *x509.Certificate, caKey *ecdsa.PrivateKey, files Files) ([]pemFile, error) {
	var out []pemFile
	for _, leaf := range []struct {
		role, file string
		eku        x509.ExtKeyUsage
	}{
		{RolePrimary, files.PrimaryCert, x509.ExtKeyUsageClientAuth},
		{RoleReplica, files.ReplicaCert, x509.ExtKeyUsageServerAuth},
	} {
		id := Identity{Site: site, Role: leaf.role}
		tmpl := &x509.Certificate{
			Subject:               pkix.Name{CommonName: "drfs-" + leaf.role + " " + site, Organization: []string{"drfs"}},
			NotBefore:             now.Add(-backdate),
			NotAfter:              now.Add(leafValidity),
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{leaf.eku},
			BasicConstraintsValid: true,
			URIs:                  []*url.URL{id.uri()},
		}
		if leaf.role == RoleReplica {
			tmpl.IPAddresses, tmpl.DNSNames = ips, dnsNames
		}
		var err error
		if tmpl.SerialNumber, err = newSerial(); err != nil {
			return nil, err
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			return nil, fmt.Errorf("tlsutil: create %s certificate: %w", id, err)
		}
		out = append(out, pemFile{leaf.file, 0o644, certPEM(der)})
	}
	return out, nil
}

// Request creates this site's key in dir and a certificate signing request for site, to be
// signed on the CA's site with Sign. hosts are the names the site's replica certificate will
// carry (see Init). The request is written as dir/SITE.csr.
func Request(dir, site string, hosts []string, force bool) (Files, error) {
	ips, dnsNames, files, err := siteDir(dir, site, hosts)
	if err != nil {
		return Files{}, err
	}
	files.CSR = filepath.Join(dir, site+".csr")
	if !force {
		if err := refuseExisting(files.Key, files.CSR); err != nil {
			return Files{}, err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("tlsutil: generate site key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "drfs site " + site, Organization: []string{"drfs"}},
		URIs:        []*url.URL{{Scheme: IdentityScheme, Host: site}},
		IPAddresses: ips,
		DNSNames:    dnsNames,
	}, key)
	if err != nil {
		return Files{}, fmt.Errorf("tlsutil: create request: %w", err)
	}
	kp, err := keyPEM(key)
	if err != nil {
		return Files{}, err
	}
	out := []pemFile{
		{files.Key, 0o600, kp},
		{files.CSR, 0o644, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})},
	}
	if err := writeAll(dir, out, force); err != nil {
		return Files{}, err
	}
	return files, nil
}

// Signed describes what Sign issued.
type Signed struct {
	Files
	Site  string
	Hosts []string // the replica certificate's host SANs
}

// Sign issues, with the CA in caDir, the primary and replica certificates of the site that
// wrote the request csrFile, and writes them with the CA certificate into outDir. site is the
// name the operator expects: a request for any other site is refused, and so is one for the
// CA's own site (two sites with one identity could act for each other).
func Sign(caDir, csrFile, site, outDir string, force bool) (Signed, error) {
	if err := ValidSite(site); err != nil {
		return Signed{}, err
	}
	raw, err := os.ReadFile(csrFile)
	if err != nil {
		return Signed{}, fmt.Errorf("tlsutil: read request: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return Signed{}, fmt.Errorf("tlsutil: %s holds no PEM certificate request", csrFile)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return Signed{}, fmt.Errorf("tlsutil: parse request %s: %w", csrFile, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return Signed{}, fmt.Errorf("tlsutil: request %s: bad signature: %w", csrFile, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return Signed{}, fmt.Errorf("tlsutil: request %s: not an ECDSA key", csrFile)
	}
	var asked []string
	for _, u := range csr.URIs {
		if u.Scheme == IdentityScheme {
			asked = append(asked, u.Host)
		}
	}
	if len(asked) != 1 || asked[0] != site {
		return Signed{}, fmt.Errorf("tlsutil: request %s is for site %q, not %q", csrFile, strings.Join(asked, ","), site)
	}
	ca := filesIn(caDir)
	caCert, caKey, err := loadCA(ca)
	if err != nil {
		return Signed{}, err
	}
	if own, err := readCert(ca.ReplicaCert); err == nil {
		if id, err := CertIdentity(own); err == nil && id.Site == site {
			return Signed{}, fmt.Errorf("tlsutil: %q is the CA site's own name; give the other site another name", site)
		}
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return Signed{}, fmt.Errorf("tlsutil: create %s: %w", outDir, err)
	}
	files := filesIn(outDir)
	if !force {
		if err := refuseExisting(files.PrimaryCert, files.ReplicaCert); err != nil {
			return Signed{}, err
		}
	}
	leaves, err := newLeaves(site, pub, csr.IPAddresses, csr.DNSNames, time.Now(), caCert, caKey, files)
	if err != nil {
		return Signed{}, err
	}
	out := leaves
	if filepath.Clean(outDir) != filepath.Clean(caDir) {
		out = append(out, pemFile{files.CA, 0o644, certPEM(caCert.Raw)})
	}
	if err := writeAll(outDir, out, true); err != nil {
		return Signed{}, err
	}
	sg := Signed{Files: files, Site: site}
	for _, ip := range csr.IPAddresses {
		sg.Hosts = append(sg.Hosts, ip.String())
	}
	sg.Hosts = append(sg.Hosts, csr.DNSNames...)
	return sg, nil
}

func readCert(name string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("tlsutil: %s holds no PEM certificate", name)
	}
	return x509.ParseCertificate(block.Bytes)
}

func loadCA(f Files) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	caCert, err := readCert(f.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: read CA: %w", err)
	}
	raw, err := os.ReadFile(f.CAKey)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: read CA key (sign on the site that ran drfs certs init): %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, nil, fmt.Errorf("tlsutil: %s holds no PEM key", f.CAKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: parse CA key: %w", err)
	}
	caKey, ok := k.(*ecdsa.PrivateKey)
	if !ok || !caKey.PublicKey.Equal(caCert.PublicKey) {
		return nil, nil, fmt.Errorf("tlsutil: %s is not the key of %s", f.CAKey, f.CA)
	}
	return caCert, caKey, nil
}

// parseHosts splits hosts into IP and DNS SANs, adds the defaults and drops
// duplicates. A bracketed IPv6 literal ("[::1]") is accepted; anything with a
// port or whitespace inside is rejected rather than silently producing a SAN
// no client will ever match.
// siteDir checks a site name and its hosts and creates the site's certificate directory dir
// (0700): the common start of Init and Request.
func siteDir(dir, site string, hosts []string) (ips []net.IP, dnsNames []string, files Files, err error) {
	if err = ValidSite(site); err != nil {
		return
	}
	if ips, dnsNames, err = parseHosts(hosts); err != nil {
		return
	}
	if err = os.MkdirAll(dir, 0o700); err != nil {
		err = fmt.Errorf("tlsutil: create %s: %w", dir, err)
		return
	}
	return ips, dnsNames, filesIn(dir), nil
}

func parseHosts(hosts []string) ([]net.IP, []string, error) {
	var ips []net.IP
	var names []string
	for _, h := range append(slices.Clone(hosts), defaultHosts...) {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		if strings.ContainsAny(h, ":/ \t[]") {
			return nil, nil, fmt.Errorf("tlsutil: invalid host %q: want an IP address or DNS name without port", h)
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	return ips, names, nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsutil: serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // never zero
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeFile writes data to a temporary file next to name with the final mode
// already set, fsyncs it and moves it into place. Without force it links
// rather than renames, so a file created concurrently since the caller's check
// is not clobbered.
func writeFile(name string, data []byte, mode os.FileMode, force bool) (err error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("tlsutil: write %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600 already; Chmod covers the 0644
	// certificates and is explicit about the keys regardless of umask.
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("tlsutil: write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("tlsutil: write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("tlsutil: write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tlsutil: write %s: %w", name, err)
	}
	if force {
		if err := os.Rename(tmp, name); err != nil {
			return fmt.Errorf("tlsutil: write %s: %w", name, err)
		}
		return nil
	}
	if err := os.Link(tmp, name); err != nil {
		return fmt.Errorf("tlsutil: write %s: %w", name, err)
	}
	return os.Remove(tmp)
}

// ServerConfig returns a config for a drfs TLS listener: TLS 1.3 only, serving
// certFile/keyFile, and requiring every client to present a certificate
// signed by the CA in caFile with the ClientAuth usage. It fails early, rather
// than at the first handshake, if the server's own certificate is not a
// replica certificate signed by that CA. The handler reads the client's
// identity with PeerIdentity.
func ServerConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, cert, _, err := load(caFile, certFile, keyFile, RoleReplica)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ClientConfig returns a config for dialing a drfs TLS listener: TLS 1.3
// only, presenting certFile/keyFile (a primary certificate), trusting only the
// CA in caFile, and accepting only a server that presents a replica
// certificate.
//
// If serverName is empty, the name checked against the server's certificate
// is the one being dialed, which net/http fills in from the URL; callers of
// tls.Client on a raw connection must then set ServerName themselves.
func ClientConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	pool, cert, _, err := load(caFile, certFile, keyFile, RolePrimary)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := PeerIdentity(&cs)
			if err != nil {
				return err
			}
			if id.Role != RoleReplica {
				return fmt.Errorf("tlsutil: the server presents the certificate of %s, not of a replica", id)
			}
			return nil
		},
	}, nil
}

// LoadServer loads the server config of a replica (drfs serve) from a certificate directory:
// ca.pem, replica.pem and key.pem. It returns the site's identity too.
func LoadServer(dir string) (*tls.Config, Identity, error) {
	f := filesIn(dir)
	cfg, err := ServerConfig(f.CA, f.ReplicaCert, f.Key)
	if err != nil {
		return nil, Identity{}, err
	}
	id, _ := CertIdentity(cfg.Certificates[0].Leaf)
	return cfg, id, nil
}

// LoadClient loads the client config of a primary (drfs mount) from a certificate directory:
// ca.pem, primary.pem and key.pem. It returns the site's identity too.
func LoadClient(dir string) (*tls.Config, Identity, error) {
	f := filesIn(dir)
	cfg, err := ClientConfig(f.CA, f.PrimaryCert, f.Key, "")
	if err != nil {
		return nil, Identity{}, err
	}
	id, _ := CertIdentity(cfg.Certificates[0].Leaf)
	return cfg, id, nil
}

// load reads the CA pool and the key pair and checks that the certificate
// chains to the CA for the role's usage and carries an identity of that role, so a mixed-up directory is reported by name
// instead of as an opaque handshake failure on the other machine.
func load(caFile, certFile, keyFile, role string) (*x509.CertPool, tls.Certificate, Identity, error) {
	usage := x509.ExtKeyUsageClientAuth
	if role == RoleReplica {
		usage = x509.ExtKeyUsageServerAuth
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, tls.Certificate{}, Identity{}, fmt.Errorf("tlsutil: read CA %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, tls.Certificate{}, Identity{}, fmt.Errorf("tlsutil: read CA %s: no PEM certificate found", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, tls.Certificate{}, Identity{}, fmt.Errorf("tlsutil: load key pair %s, %s: %w", certFile, keyFile, err)
	}
	leaf := cert.Leaf // set by LoadX509KeyPair since Go 1.23
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, tls.Certificate{}, Identity{}, fmt.Errorf("tlsutil: parse certificate %s: %w", certFile, err)
		}
		cert.Leaf = leaf
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &unknown):
		return nil, tls.Certificate{}, Identity{}, fmt.Errorf("tlsutil: certificate %s is not signed by the CA %s", certFile, caFile)
	case err != nil:
		return nil, tls.Certificate{}, Identity{}, fmt.Errorf("tlsutil: certificate %s: %w", certFile, err)
	}
	id, err := CertIdentity(leaf)
	if err != nil {
		return nil, tls.Certificate{}, Identity{}, fmt.Errorf("%w: %s", err, certFile)
	}
	if id.Role != role {
		return nil, tls.Certificate{}, Identity{}, fmt.Errorf("tlsutil: %s is the certificate of %s, want a %s certificate", certFile, id, role)
	}
	return pool, cert, id, nil
}
