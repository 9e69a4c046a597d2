package pxe

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The pool gauges count the dynamic range less the excluded and reserved
// addresses, and what leases and offers hold of it.
func TestDHCPPoolUsage(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t) // range .100-.102
	cfg.Reservations = map[string]netip.Addr{"52:54:00:00:00:99": netip.MustParseAddr("10.9.0.102")}
	s := unitService(t, cfg, nil)
	size, used := s.leases.pool()
	require.Equal(t, [2]int{2, 0}, [2]int{size, used})
	dora(t, s, testMAC)
	size, used = s.leases.pool()
	require.Equal(t, [2]int{2, 1}, [2]int{size, used})
}

// The metrics listener answers /metrics from the service's own registry
// in the test's own namespace while DHCP, TFTP and HTTP serve inside the
// provisioning namespace.
func TestMetricsListenerOutsideTheNetns(t *testing.T) {
	l := newLab(t, 84)
	cfg := l.config()
	cfg.MetricsAddr = netip.MustParseAddrPort("127.0.0.1:0")
	s := l.start(cfg, Deps{})
	addr := s.MetricsAddr()
	require.NotZero(t, addr.Port())
	resp, body := get(t, "http://"+addr.String()+"/metrics")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, m := range []string{"rackcloud_boot_dhcp_pool_addresses ", "rackcloud_boot_dhcp_pool_used 0", "rackcloud_boot_dhcp_leases 0"} {
		require.Contains(t, body, m)
	}
	require.False(t, strings.Contains(body, "go_goroutines"), "the service's own registry, not the global one")
	resp, _ = get(t, "http://"+addr.String()+"/boot/52:54:00:00:00:01.ipxe")
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "the metrics listener serves nothing else")
}
