package provisioner

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostca"
	"github.com/rackcloud/rackcloud/hostconfig"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/vmctl"
)

// RoleChecker reaches an installed host's role daemon.
type RoleChecker interface {
	// Check reaches role's daemon on the host at addr and returns its
	// endpoint and a line of what it answered.
	Check(ctx context.Context, h rackcloud.Host, role rackcloud.HostRole, addr string) (endpoint, answer string, err error)
}

// DialFunc opens a connection (a net.Dialer's DialContext, or one that
// dials inside the provisioning network's namespace: nsnet.Dialer).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// TLSRoles checks roles over mutual TLS with the host CA's client
// certificate: dockerd's GET /_ping on 2376, libvirtd's version on 16514.
type TLSRoles struct {
	Pool   *pgxpool.Pool
	Sealer *store.Sealer
	Dial   DialFunc
}

// Endpoints of the role daemons.
func DockerEndpoint(addr string) string {
	return "tcp://" + net.JoinHostPort(addr, strconv.Itoa(hostconfig.DockerTLSPort))
}

// LibvirtEndpoint is libvirtd's URI on addr.
func LibvirtEndpoint(addr string) string {
	return "qemu+tls://" + net.JoinHostPort(addr, strconv.Itoa(hostconfig.LibvirtTLSPort)) + "/system"
}

// TLSConfig is the TLS configuration to reach host hostID's daemon.
func (r *TLSRoles) TLSConfig(ctx context.Context, hostID string) (*tls.Config, error) {
	ca, client, err := store.HostCA(ctx, r.Pool, r.Sealer)
	if err != nil {
		return nil, err
	}
	return hostca.ClientTLS(ca.Cert, client, hostID)
}

func (r *TLSRoles) dial() DialFunc {
	if r.Dial != nil {
		return r.Dial
	}
	return (&net.Dialer{}).DialContext
}

// Check implements RoleChecker.
func (r *TLSRoles) Check(ctx context.Context, h rackcloud.Host, role rackcloud.HostRole, addr string) (string, string, error) {
	cfg, err := r.TLSConfig(ctx, h.ID)
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch role {
	case rackcloud.RoleDocker:
		return r.docker(ctx, cfg, addr)
	case rackcloud.RoleKVM:
		return r.libvirt(ctx, cfg, addr)
	}
	return "", "", fmt.Errorf("role %q has no daemon to check", role)
}

func (r *TLSRoles) docker(ctx context.Context, cfg *tls.Config, addr string) (string, string, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: r.dial(), TLSClientConfig: cfg, DisableKeepAlives: true}}
	u := "https://" + net.JoinHostPort(addr, strconv.Itoa(hostconfig.DockerTLSPort)) + "/_ping"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("dockerd at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("dockerd at %s: GET /_ping: %s", addr, resp.Status)
	}
	return DockerEndpoint(addr), "dockerd " + resp.Header.Get("Api-Version") + " " + strings.TrimSpace(string(body)), nil
}

// tlsDialer is go-libvirt's dialer over mutual TLS.
type tlsDialer struct {
	ctx  context.Context
	dial DialFunc
	cfg  *tls.Config
	addr string
}

func (d tlsDialer) Dial() (net.Conn, error) {
	return vmctl.LibvirtTLSDial(d.ctx, vmctl.DialFunc(d.dial), d.cfg, d.addr)
}

func (r *TLSRoles) libvirt(ctx context.Context, cfg *tls.Config, addr string) (string, string, error) {
	l := libvirt.NewWithDialer(tlsDialer{ctx: ctx, dial: r.dial(), cfg: cfg,
		addr: net.JoinHostPort(addr, strconv.Itoa(hostconfig.LibvirtTLSPort))})
	if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
		return "", "", fmt.Errorf("libvirtd at %s: %w", addr, err)
	}
	defer l.Disconnect()
	v, err := l.ConnectGetLibVersion()
	if err != nil {
		return "", "", fmt.Errorf("libvirtd at %s: version: %w", addr, err)
	}
	return LibvirtEndpoint(addr), fmt.Sprintf("libvirt %d.%d.%d", v/1000000, v/1000%1000, v%1000), nil
}
