package hostca_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/rackcloud/rackcloud/hostca"
)

// A client with rackcloud's certificate and a host's server talk over
// mutual TLS; a client without a certificate, and a server from another
// CA, are refused.
func TestMutualTLS(t *testing.T) {
	now := time.Now()
	ca, err := hostca.New(now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hostca.Load(ca.Pair); err != nil {
		t.Fatal(err)
	}
	const id = "0b7e8a52-1b43-4c1e-9a53-9a1b7d8f3c21"
	host, err := ca.Host(id, "node1", []net.IP{net.ParseIP("127.0.0.1")}, now)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client(now)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, _ := tls.X509KeyPair([]byte(host.Cert), []byte(host.Key))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca.Cert))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srvCert},
		ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("ok"))
			}()
		}
	}()
	dial := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		b := make([]byte, 2)
		_, err = c.Read(b)
		return err
	}
	cfg, err := hostca.ClientTLS(ca.Cert, client, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(cfg); err != nil {
		t.Fatalf("rackcloud's client: %v", err)
	}
	noCert := cfg.Clone()
	noCert.Certificates = nil
	if err := dial(noCert); err == nil {
		t.Fatal("a client without a certificate was answered")
	}
	other, _ := hostca.New(now)
	otherCfg, _ := hostca.ClientTLS(other.Cert, client, id)
	if err := dial(otherCfg); err == nil {
		t.Fatal("a server from another CA was trusted")
	}
	wrongHost, _ := hostca.ClientTLS(ca.Cert, client, "another-host")
	if err := dial(wrongHost); err == nil {
		t.Fatal("host certificate accepted for another host's name")
	}
}
