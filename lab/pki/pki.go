// Package pki makes the lab's throwaway certificate authorities: a CA and
// a server certificate it signs for loopback (127.0.0.1, ::1, localhost)
// and any other names given, written as PEM files for the servers and
// clients under test (the API's --tls-cert-file, a client's CA file).
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKI is a CA, one server certificate and one client certificate, on disk
// and in memory.
type PKI struct {
	// CAFile, CertFile and KeyFile are PEM files: the CA certificate, the
	// server's certificate chain (leaf then CA) and its private key.
	CAFile, CertFile, KeyFile string
	// ClientCertFile and ClientKeyFile are a client certificate the CA
	// signed (for servers that require one: dockerd --tlsverify,
	// libvirtd over TLS) and its key.
	ClientCertFile, ClientKeyFile string
	// Pool holds the CA, for clients; Cert is the server's, for servers;
	// Client is the client's.
	Pool   *x509.CertPool
	Cert   tls.Certificate
	Client tls.Certificate
}

// New makes a CA named name and a server certificate for loopback and
// hosts (IP addresses or DNS names), valid for a week, in dir (ca.pem,
// cert.pem, key.pem; the key is mode 0600), and a client certificate
// (client.pem, client-key.pem).
func New(dir, name string, hosts ...string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, key, keyDER, err := issue(tmpl, ca, caKey)
	if err != nil {
		return nil, err
	}
	clientDER, clientKey, clientKeyDER, err := issue(&x509.Certificate{SerialNumber: big.NewInt(3),
		Subject: pkix.Name{CommonName: name + " client"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, caKey)
	if err != nil {
		return nil, err
	}
	p := &PKI{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"),
		ClientCertFile: filepath.Join(dir, "client.pem"), ClientKeyFile: filepath.Join(dir, "client-key.pem"),
		Pool: x509.NewCertPool(), Cert: tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key},
		Client: tls.Certificate{Certificate: [][]byte{clientDER, caDER}, PrivateKey: clientKey}}
	p.Pool.AddCert(ca)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{p.CAFile, caPEM, 0o644},
		{p.CertFile, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), caPEM...), 0o644},
		{p.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{p.ClientCertFile, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientDER}), caPEM...), 0o644},
		{p.ClientKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: clientKeyDER}), 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(f.name, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
	}
	return p, nil
}

// issue makes a key and a certificate from tmpl that ca signs, valid from
// an hour ago for a week; it returns the certificate's and the key's DER.
func issue(tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(7*24*time.Hour)
	// Key encipherment too: libvirt (GnuTLS) requires it on both ends.
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	return der, key, keyDER, err
}
