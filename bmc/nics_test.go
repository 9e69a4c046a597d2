package bmc_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/rack"
)

// TestNICs reads each simulated server's NIC through its Redfish BMC (real
// HTTPS, verified with the rack's CA) and gets the MAC QEMU gives that
// server, normalised; IPMI says it cannot, without asking the BMC; a wrong
// password, an untrusted certificate and a nonsense MAC give their usual
// kinds.
func TestNICs(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 2, Virtual: true, Redfish: true})
	const timeout = 5 * time.Second
	e := newManager(t, bmc.Config{Timeout: timeout, RootCAs: r.CertPool()})
	ctx := ctxT(t, 2*time.Minute)

	for _, n := range r.Nodes {
		c, err := e.m.Client(redfishEndpoint(n))
		require.NoError(t, err)
		got, err := c.NICs(ctx)
		require.NoError(t, err, n.Name)
		want := []bmc.NIC{{Name: "NIC 1", MAC: n.MAC.String(), SpeedMbps: 1000, Enabled: true}}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s NICs (-want +got):\n%s", n.Name, d)
		}
		norm, err := rackcloud.NormalizeMAC(got[0].MAC)
		require.NoError(t, err)
		require.Equal(t, norm, got[0].MAC, "lower-case colon form")
	}
	require.NotEqual(t, r.Nodes[0].MAC.String(), r.Nodes[1].MAC.String())
	require.Equal(t, 2.0, metric(t, e.reg, "rackcloud_bmc_requests_total", map[string]string{"op": "nics", "result": "ok"}))

	t.Run("ipmi unsupported", func(t *testing.T) {
		ep := ipmiEndpoint(r.Nodes[0])
		c, err := e.m.Client(ep)
		require.NoError(t, err)
		_, err = c.NICs(ctx)
		requireKind(t, err, bmc.ErrUnsupported)
		require.Equal(t, "nics not supported by the BMC", bmc.Reason(err))
		h := c.Health()
		require.True(t, h.LastAttempt.IsZero(), "the BMC was not asked")
		require.Zero(t, h.ConsecutiveFailures, "not the BMC's fault")
		require.Equal(t, 1.0, metric(t, e.reg, "rackcloud_bmc_requests_total", map[string]string{"op": "nics", "result": "unsupported"}))
	})

	t.Run("redfish nonsense MAC", func(t *testing.T) {
		n := r.Nodes[1]
		c, err := e.m.Client(redfishEndpoint(n))
		require.NoError(t, err)
		n.SetFault(rack.Fault{RedfishMAC: "zz:zz"})
		_, err = c.NICs(ctx)
		n.SetFault(rack.Fault{})
		requireKind(t, err, bmc.ErrBadResponse)
		require.Contains(t, err.Error(), "zz:zz")
	})

	t.Run("redfish wrong password", func(t *testing.T) {
		other := newManager(t, bmc.Config{Timeout: timeout, RootCAs: r.CertPool()})
		ep := redfishEndpoint(r.Nodes[0])
		ep.Password = bmc.NewSecret("wrong-password")
		c, err := other.m.Client(ep)
		require.NoError(t, err)
		_, err = c.NICs(ctx)
		requireKind(t, err, bmc.ErrAuth)
		require.NotContains(t, err.Error(), "wrong-password")
		require.False(t, c.Health().Healthy)
		require.NotContains(t, other.log.String(), "wrong-password")
	})

	t.Run("redfish untrusted certificate", func(t *testing.T) {
		other := newManager(t, bmc.Config{Timeout: timeout}) // system roots only
		c, err := other.m.Client(redfishEndpoint(r.Nodes[0]))
		require.NoError(t, err)
		_, err = c.NICs(ctx)
		requireKind(t, err, bmc.ErrTLS)
	})
	require.NoError(t, ctx.Err(), "every failure within its call's timeout")
	require.NotContains(t, e.log.String(), r.Password())
}
