package hostimg

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostconfig"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/qemu"
)

// TestKVMHostBoots boots the kvm image (UEFI) and checks the heartbeat,
// then libvirtd over mutual TLS on :16514 from the provisioning network
// (the hostname and the domain list through go-libvirt), and that a
// client without a certificate is refused.
func TestKVMHostBoots(t *testing.T) {
	skipIfShort(t)
	l, h, certs, ip := bootDaemonHost(t, rackcloud.RoleKVM, qemu.UEFI, "10.83.0.1/24")
	addr := net.JoinHostPort(ip, fmt.Sprint(hostconfig.LibvirtTLSPort))
	dial := func(cert *tls.Certificate) (*libvirt.Libvirt, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		c, err := l.net.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		cfg := &tls.Config{RootCAs: certs.Pool, ServerName: h.cfg.Hostname + ".lab"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tc := tls.Client(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		// libvirtd checks the client's certificate after the handshake
		// and sends one byte, 1, when it passed.
		ok := make([]byte, 1)
		if _, err := io.ReadFull(tc, ok); err != nil || ok[0] != 1 {
			tc.Close()
			return nil, fmt.Errorf("libvirtd refused the client after the TLS handshake (%v, %q)", err, ok)
		}
		lv := libvirt.NewWithDialer(dialers.NewAlreadyConnected(tc))
		if err := lv.Connect(); err != nil {
			tc.Close()
			return nil, err
		}
		_ = tc.SetDeadline(time.Time{})
		return lv, nil
	}
	var lv *libvirt.Libvirt
	labtest.Eventually(t, 3*time.Minute, time.Second, "libvirtd over TLS", func() (bool, string) {
		var err error
		lv, err = dial(&certs.Client)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	defer lv.Disconnect()
	t.Logf("kvm: libvirtd over mutual TLS answered %s after QEMU start", time.Since(h.started).Round(100*time.Millisecond))
	name, err := lv.ConnectGetHostname()
	require.NoError(t, err)
	require.Equal(t, h.cfg.Hostname, name)
	ver, err := lv.ConnectGetLibVersion()
	require.NoError(t, err)
	doms, _, err := lv.ConnectListAllDomains(1, 0)
	require.NoError(t, err)
	t.Logf("kvm: libvirt %d, %d domains", ver, len(doms))

	_, err = dial(nil)
	require.Error(t, err, "a client without a certificate is refused")
	t.Logf("kvm: without a client certificate: %v", err)
}
