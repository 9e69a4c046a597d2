package vmctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostca"
	"github.com/rackcloud/rackcloud/store"
)

// Targets tells drivers how to reach hosts' daemons: a provisioned host
// with the host CA's client certificate (its server certificate names
// <id>.hosts.rackcloud), an adopted one with the credentials its operator
// gave, a unix socket with none.
type Targets struct {
	Pool   *pgxpool.Pool
	Sealer *store.Sealer
	Dial   DialFunc
}

// For returns the target of host h.
func (t *Targets) For(ctx context.Context, h rackcloud.Host) (Target, error) {
	tg := Target{HostID: h.ID, Role: h.Role, Endpoint: h.Endpoint, Dial: t.Dial}
	if h.Role == rackcloud.RoleBareMetal {
		return tg, nil // no daemon: the BMC is reached by the host's ID
	}
	if h.Endpoint == "" {
		return tg, fmt.Errorf("%w: host %s has no endpoint", rackcloud.ErrInvalid, h.Name)
	}
	if IsUnixEndpoint(h.Endpoint) {
		return tg, nil
	}
	creds, err := store.GetHostCredentials(ctx, t.Pool, t.Sealer, h.ID)
	switch {
	case err == nil:
		tg.TLS, err = ClientTLS(creds, h.Endpoint)
		return tg, err
	case errors.Is(err, rackcloud.ErrNotFound):
		ca, client, err := store.HostCA(ctx, t.Pool, t.Sealer)
		if err != nil {
			return tg, fmt.Errorf("host %s: rackcloud's host CA: %w", h.Name, err)
		}
		tg.TLS, err = hostca.ClientTLS(ca.Cert, client, h.ID)
		return tg, err
	default:
		return tg, fmt.Errorf("host %s: credentials: %w", h.Name, err)
	}
}

// IsUnixEndpoint says whether an endpoint is a local unix socket
// (unix:///path, qemu+unix:///system?socket=/path).
func IsUnixEndpoint(endpoint string) bool {
	return strings.HasPrefix(endpoint, "unix://") || strings.HasPrefix(endpoint, "qemu+unix://") ||
		strings.HasPrefix(endpoint, "qemu:///")
}

// CheckEndpoint checks that endpoint is one a role's daemon can answer on.
func CheckEndpoint(role rackcloud.HostRole, endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("%w: endpoint: %v", rackcloud.ErrInvalid, err)
	}
	switch role {
	case rackcloud.RoleDocker:
		switch u.Scheme {
		case "unix":
			if u.Path == "" {
				return fmt.Errorf("%w: endpoint %q: want unix:///path/to/docker.sock", rackcloud.ErrInvalid, endpoint)
			}
			return nil
		case "tcp":
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return fmt.Errorf("%w: endpoint %q: want tcp://ADDR:PORT", rackcloud.ErrInvalid, endpoint)
			}
			return nil
		}
		return fmt.Errorf("%w: endpoint %q: dockerd answers on unix:// or tcp:// (TLS)", rackcloud.ErrInvalid, endpoint)
	case rackcloud.RoleKVM:
		switch u.Scheme {
		case "qemu+unix":
			if u.Query().Get("socket") == "" {
				return fmt.Errorf("%w: endpoint %q: want qemu+unix:///system?socket=/path", rackcloud.ErrInvalid, endpoint)
			}
			return nil
		case "qemu+tls":
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return fmt.Errorf("%w: endpoint %q: want qemu+tls://ADDR:PORT/system", rackcloud.ErrInvalid, endpoint)
			}
			return nil
		}
		return fmt.Errorf("%w: endpoint %q: libvirtd answers on qemu+unix:// or qemu+tls://", rackcloud.ErrInvalid, endpoint)
	}
	return fmt.Errorf("%w: a %q host has no daemon to adopt", rackcloud.ErrInvalid, role)
}

// ClientTLS builds the client side of mutual TLS from an operator's
// credentials; the server name is theirs, else the endpoint's host.
func ClientTLS(c store.HostCredentials, endpoint string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if cfg.ServerName == "" {
		if u, err := url.Parse(endpoint); err == nil {
			cfg.ServerName = u.Hostname()
		}
	}
	if c.CAPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(c.CAPEM)) {
			return nil, fmt.Errorf("%w: ca_pem holds no certificate", rackcloud.ErrInvalid)
		}
		cfg.RootCAs = pool
	}
	if c.CertPEM != "" || c.KeyPEM != "" {
		cert, err := tls.X509KeyPair([]byte(c.CertPEM), []byte(c.KeyPEM))
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate and key: %v", rackcloud.ErrInvalid, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
