package pxe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pki"
)

// testCA makes a CA (written as PEM to caFile) and a certificate it signed
// for 127.0.0.1.
func testCA(t *testing.T) (caFile string, cert tls.Certificate) {
	t.Helper()
	p, err := pki.New(t.TempDir(), "rackcloud test API")
	require.NoError(t, err)
	return p.CAFile, p.Cert
}

// The API client trusts the CAs of APIConfig.CAFile (besides the
// system's): it reads profiles from an API whose certificate that CA
// signed, and refuses it without the file. A missing or empty CA file is
// an error at once.
func TestAPIClientTrustsCAFile(t *testing.T) {
	caFile, cert := testCA(t)
	const mac = "52:54:00:aa:0c:01"
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(Profile{MAC: mac, State: rackcloud.HostReady})
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ctx := context.Background()

	c, err := NewAPIClient(APIConfig{BaseURL: srv.URL, CAFile: caFile}, testLogger(t))
	require.NoError(t, err)
	p, err := c.Profile(ctx, mac)
	require.NoError(t, err)
	require.Equal(t, rackcloud.HostReady, p.State)
	require.False(t, p.Cached)

	c, err = NewAPIClient(APIConfig{BaseURL: srv.URL}, testLogger(t))
	require.NoError(t, err)
	_, err = c.Profile(ctx, mac)
	var unknown x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknown, "without the CA file the certificate is not trusted")

	_, err = NewAPIClient(APIConfig{BaseURL: srv.URL, CAFile: filepath.Join(t.TempDir(), "nope.pem")}, nil)
	require.ErrorContains(t, err, "CA file")
	empty := filepath.Join(t.TempDir(), "empty.pem")
	require.NoError(t, os.WriteFile(empty, []byte("not a certificate\n"), 0o644))
	_, err = NewAPIClient(APIConfig{BaseURL: srv.URL, CAFile: empty}, nil)
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
	require.ErrorContains(t, err, "no PEM certificate")
	_, err = NewAPIClient(APIConfig{BaseURL: srv.URL, CAFile: caFile, Client: http.DefaultClient}, nil)
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
}
