// Package hostca is rackcloud's host certificate authority: it issues
// each installed host the server certificate its role's daemon (dockerd,
// libvirtd) listens with, and rackcloud the client certificate it calls
// them with. Both sides trust only this CA, so a daemon answers only
// rackcloud and rackcloud talks only to hosts it installed.
package hostca

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
	"math/big"
	"net"
	"time"
)

// Lifetimes of what the CA issues.
const (
	CALifetime     = 20 * 365 * 24 * time.Hour
	HostLifetime   = 5 * 365 * 24 * time.Hour
	ClientLifetime = 5 * 365 * 24 * time.Hour
)

// ServerName is the DNS name in a host's certificate that clients verify
// (tls.Config.ServerName): the host's ID under a name no DNS answers, so
// the certificate does not depend on the address DHCP gave.
func ServerName(hostID string) string { return hostID + ".hosts.rackcloud" }

// leafUsage is the key usage of the certificates the CA issues: libvirt
// (GnuTLS) refuses a server or client certificate without key
// encipherment, whatever the key type.
const leafUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment

// Pair is a PEM certificate and its PEM private key.
type Pair struct {
	Cert string
	Key  string
}

// CA is the host CA: its certificate and key.
type CA struct {
	Pair
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// New creates a CA.
func New(now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "rackcloud host CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(CALifetime),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	p, err := pair(der, key)
	if err != nil {
		return nil, err
	}
	return Load(p)
}

// Load reads a CA from its PEM pair.
func Load(p Pair) (*CA, error) {
	tc, err := tls.X509KeyPair([]byte(p.Cert), []byte(p.Key))
	if err != nil {
		return nil, fmt.Errorf("host CA: %w", err)
	}
	key, ok := tc.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("host CA: not an ECDSA key")
	}
	cert, err := x509.ParseCertificate(tc.Certificate[0])
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("host CA: the certificate is not a CA's")
	}
	return &CA{Pair: p, cert: cert, key: key}, nil
}

// Host issues a host's server certificate, for ServerName(hostID), the
// host's name, and ips when known.
func (c *CA) Host(hostID, name string, ips []net.IP, now time.Time) (Pair, error) {
	return c.issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: ServerName(hostID)}, DNSNames: []string{ServerName(hostID), name}, IPAddresses: ips,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(HostLifetime),
		KeyUsage: leafUsage, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

// Client issues rackcloud's client certificate.
func (c *CA) Client(now time.Time) (Pair, error) {
	return c.issue(&x509.Certificate{
		Subject:   pkix.Name{CommonName: "rackcloud", Organization: []string{"rackcloud"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(ClientLifetime),
		KeyUsage: leafUsage, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (c *CA) issue(tmpl *x509.Certificate) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, err
	}
	tmpl.SerialNumber = serial()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return Pair{}, err
	}
	return pair(der, key)
}

// ClientTLS is the TLS configuration rackcloud dials host hostID's daemon
// with: its client certificate, trusting only the CA (caPEM).
func ClientTLS(caPEM string, client Pair, hostID string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("host CA: no certificate in its PEM")
	}
	cert, err := tls.X509KeyPair([]byte(client.Cert), []byte(client.Key))
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: ServerName(hostID),
		MinVersion: tls.VersionTLS12}, nil
}

func pair(der []byte, key *ecdsa.PrivateKey) (Pair, error) {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{
		Cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		Key:  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})),
	}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}
