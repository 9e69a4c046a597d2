package dockerd_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab/dockerd"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pki"
)

// TestTwoDaemons starts two daemons at once in two namespaces, one also
// on tcp with mutual TLS, checks each answers /_ping (the TLS one only to
// a client with a certificate), and that Stop, twice, leaves no process
// and no mount behind.
func TestTwoDaemons(t *testing.T) {
	labtest.Need(t, dockerd.Binary, "nsenter")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	n1 := labtest.Net(t, "rcdk", "10.61.0.1/24")
	n2 := labtest.Net(t, "rcdk", "10.62.0.1/24")
	p, err := pki.New(t.TempDir(), "dockerd-test")
	require.NoError(t, err)

	type started struct {
		d   *dockerd.Daemon
		err error
	}
	ch := make(chan started, 2)
	start := func(cfg dockerd.Config) {
		d, err := dockerd.Start(ctx, cfg)
		ch <- started{d, err}
	}
	addr := netip.MustParseAddrPort("127.0.0.1:2376")
	go start(dockerd.Config{Dir: t.TempDir(), Netns: n1})
	go start(dockerd.Config{Dir: t.TempDir(), Netns: n2, TLS: &dockerd.TLS{CAFile: p.CAFile, CertFile: p.CertFile, KeyFile: p.KeyFile, Addr: addr}})
	var ds []*dockerd.Daemon
	for range 2 {
		s := <-ch
		if s.d != nil {
			ds = append(ds, s.d)
			t.Cleanup(func() { _ = s.d.Stop() })
		}
		require.NoError(t, s.err)
	}
	for _, d := range ds {
		t.Logf("dockerd pid %d, storage driver %s, %s %s", d.PID(), d.StorageDriver, d.Endpoint, d.TCPEndpoint)
		resp, err := d.HTTPClient().Get("http://docker/_ping")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	tlsd := ds[0]
	if tlsd.TCPEndpoint == "" {
		tlsd = ds[1]
	}
	get := func(cert []tls.Certificate) error {
		hc := &http.Client{Transport: &http.Transport{
			DialContext:     tlsd.Netns.DialContext,
			TLSClientConfig: &tls.Config{RootCAs: p.Pool, Certificates: cert, ServerName: "127.0.0.1"},
		}}
		resp, err := hc.Get("https://" + addr.String() + "/_ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		return nil
	}
	require.NoError(t, get([]tls.Certificate{p.Client}))
	require.Error(t, get(nil), "a client without a certificate is refused")
	// The tcp listener is inside the namespace, not on the host.
	_, err = net.DialTimeout("tcp", addr.String(), time.Second)
	require.Error(t, err)

	for _, d := range ds {
		require.NoError(t, d.Stop())
		require.NoError(t, d.Stop())
		require.ErrorIs(t, syscall.Kill(d.PID(), 0), syscall.ESRCH)
		mounts, err := os.ReadFile("/proc/self/mountinfo")
		require.NoError(t, err)
		require.NotContains(t, string(mounts), d.Dir+"/")
		require.False(t, strings.Contains(string(mounts), " "+d.Dir+" "))
	}
}
