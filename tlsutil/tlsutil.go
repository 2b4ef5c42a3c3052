// Package tlsutil creates and loads the certificates drfs uses for mutual TLS
// between a primary and its replica.
//
// A deployment has one private CA and two leaf certificates, one per role.
// Each leaf carries both the ServerAuth and ClientAuth extended key usages,
// because either side may dial the other (the primary pushes change logs, the
// replica pulls missing ranges), so one key pair serves as both the role's
// server and client identity. Both sides trust only the deployment's CA, never
// the system roots.
//
// Any certificate signed by the CA is accepted by the other side; the role is
// carried in the Subject CN ("drfs-primary", "drfs-replica") for logging and
// for callers that want to pin the peer's role, but the configs built here do
// not check it.
//
// # Files
//
// Generate writes a directory like this (all PEM):
//
//	ca.pem             CA certificate, self-signed, 10 years
//	ca-key.pem         CA private key (PKCS #8), 0600
//	primary.pem        leaf certificate, CN drfs-primary, 5 years
//	primary-key.pem    leaf private key (PKCS #8), 0600
//	replica.pem        leaf certificate, CN drfs-replica, 5 years
//	replica-key.pem    leaf private key (PKCS #8), 0600
//
// All keys are ECDSA P-256. The CA key is only needed to issue new leaves;
// it can be moved off both machines after Generate.
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
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"drfs/internal/fsutil"
)

// File names inside a directory made by Generate.
const (
	CAFile          = "ca.pem"
	CAKeyFile       = "ca-key.pem"
	PrimaryCertFile = "primary.pem"
	PrimaryKeyFile  = "primary-key.pem"
	ReplicaCertFile = "replica.pem"
	ReplicaKeyFile  = "replica-key.pem"
)

// Roles accepted by LoadDir; also the leaf certificates' CNs are "drfs-" + role.
const (
	RolePrimary = "primary"
	RoleReplica = "replica"
)

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

// pemFile is one file Generate writes.
type pemFile struct {
	name string
	mode os.FileMode
	pem  []byte
}

// Files are the paths Generate wrote.
type Files struct {
	CA, CAKey, PrimaryCert, PrimaryKey, ReplicaCert, ReplicaKey string
}

func filesIn(dir string) Files {
	return Files{
		CA:          filepath.Join(dir, CAFile),
		CAKey:       filepath.Join(dir, CAKeyFile),
		PrimaryCert: filepath.Join(dir, PrimaryCertFile),
		PrimaryKey:  filepath.Join(dir, PrimaryKeyFile),
		ReplicaCert: filepath.Join(dir, ReplicaCertFile),
		ReplicaKey:  filepath.Join(dir, ReplicaKeyFile),
	}
}

func (f Files) all() []string {
	return []string{f.CA, f.CAKey, f.PrimaryCert, f.PrimaryKey, f.ReplicaCert, f.ReplicaKey}
}

// Generate creates a new CA and a primary and a replica leaf certificate in
// dir (created 0700 if missing; an existing dir keeps its mode). The leaves'
// SANs are hosts (IP addresses or DNS names, without ports) plus 127.0.0.1,
// ::1 and localhost.
//
// Without force, Generate fails with an error wrapping fs.ErrExist if any of
// the six files already exists, and writes nothing. With force it replaces
// them. Each file is written to a temporary name, fsynced and renamed into
// place, so a crash leaves either the old or the new file, never a torn one,
// and a replaced key file gets mode 0600 whatever mode the old one had. The
// six files are not replaced as one unit: a crash in the middle of a forced
// Generate can leave a mix of old and new files, which ServerConfig and
// ClientConfig then reject as not signed by the CA.
func Generate(dir string, hosts []string, force bool) (Files, error) {
	ips, dnsNames, err := parseHosts(hosts)
	if err != nil {
		return Files{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("tlsutil: create %s: %w", dir, err)
	}
	files := filesIn(dir)
	if !force {
		for _, name := range files.all() {
			if _, err := os.Lstat(name); err == nil {
				return Files{}, fmt.Errorf("tlsutil: %s already exists (use force to overwrite): %w", name, fs.ErrExist)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return Files{}, fmt.Errorf("tlsutil: %w", err)
			}
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
		Subject:               pkix.Name{CommonName: "drfs CA " + caID, Organization: []string{"drfs"}},
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

	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return Files{}, err
	}
	out := []pemFile{
		{files.CA, 0o644, certPEM(caDER)},
		{files.CAKey, 0o600, caKeyPEM},
	}

	for _, leaf := range []struct{ role, cert, key string }{
		{RolePrimary, files.PrimaryCert, files.PrimaryKey},
		{RoleReplica, files.ReplicaCert, files.ReplicaKey},
	} {
		der, key, err := newLeaf("drfs-"+leaf.role, ips, dnsNames, now, caCert, caKey)
		if err != nil {
			return Files{}, err
		}
		kp, err := keyPEM(key)
		if err != nil {
			return Files{}, err
		}
		out = append(out,
			pemFile{leaf.cert, 0o644, certPEM(der)},
			pemFile{leaf.key, 0o600, kp})
	}

	for _, o := range out {
		if err := writeFile(o.name, o.pem, o.mode, force); err != nil {
			return Files{}, err
		}
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return Files{}, err
	}
	return files, nil
}

// parseHosts splits hosts into IP and DNS SANs, adds the defaults and drops
// duplicates. A bracketed IPv6 literal ("[::1]") is accepted; anything with a
// port or whitespace inside is rejected rather than silently producing a SAN
// no client will ever match.
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

func newLeaf(cn string, ips []net.IP, dnsNames []string, now time.Time, ca *x509.Certificate, caKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: generate %s key: %w", cn, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"drfs"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(leafValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IPAddresses:           ips,
		DNSNames:              dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: create %s certificate: %w", cn, err)
	}
	return der, key, nil
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
// rather than renames, so a file created concurrently since Generate's check
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
// signed by the CA in caFile. It fails early, rather than at the first
// handshake, if the server's own certificate is not signed by that CA or
// lacks the ServerAuth usage.
func ServerConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, cert, err := load(caFile, certFile, keyFile, x509.ExtKeyUsageServerAuth)
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
// only, presenting certFile/keyFile, and trusting only the CA in caFile.
//
// If serverName is empty, the name checked against the server's certificate
// is the one being dialed, which net/http fills in from the URL; callers of
// tls.Client on a raw connection must then set ServerName themselves.
func ClientConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	pool, cert, err := load(caFile, certFile, keyFile, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
	}, nil
}

// LoadDir loads the server and client configs of role ("primary" or
// "replica") from a directory made by Generate. Both present the role's
// certificate; the client config has no ServerName (see ClientConfig).
func LoadDir(dir, role string) (server, client *tls.Config, err error) {
	files := filesIn(dir)
	var cert, key string
	switch role {
	case RolePrimary:
		cert, key = files.PrimaryCert, files.PrimaryKey
	case RoleReplica:
		cert, key = files.ReplicaCert, files.ReplicaKey
	default:
		return nil, nil, fmt.Errorf("tlsutil: unknown role %q: want %q or %q", role, RolePrimary, RoleReplica)
	}
	if server, err = ServerConfig(files.CA, cert, key); err != nil {
		return nil, nil, err
	}
	if client, err = ClientConfig(files.CA, cert, key, ""); err != nil {
		return nil, nil, err
	}
	return server, client, nil
}

// load reads the CA pool and the key pair and checks that the certificate
// chains to the CA for usage, so a mixed-up directory is reported by name
// instead of as an opaque handshake failure on the other machine.
func load(caFile, certFile, keyFile string, usage x509.ExtKeyUsage) (*x509.CertPool, tls.Certificate, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("tlsutil: read CA %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, tls.Certificate{}, fmt.Errorf("tlsutil: read CA %s: no PEM certificate found", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("tlsutil: load key pair %s, %s: %w", certFile, keyFile, err)
	}
	leaf := cert.Leaf // set by LoadX509KeyPair since Go 1.23
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, tls.Certificate{}, fmt.Errorf("tlsutil: parse certificate %s: %w", certFile, err)
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
		return nil, tls.Certificate{}, fmt.Errorf("tlsutil: certificate %s is not signed by the CA %s", certFile, caFile)
	case err != nil:
		return nil, tls.Certificate{}, fmt.Errorf("tlsutil: certificate %s: %w", certFile, err)
	}
	return pool, cert, nil
}
