package bmc_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/rack"
)

// TestIPMIProviders: IPMI calls go through bmclib to the native provider
// (ipmilan) by default, sensors through its session too, and to ipmitool
// alone when configured so; both read the same power.
func TestIPMIProviders(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 1, Virtual: true})
	n := r.Nodes[0]
	ctx := ctxT(t, time.Minute)
	for _, tc := range []struct{ provider, answers, sensors string }{
		{"", `"provider":"ipmilan","providers_attempted":["ipmilan"]`, `"op":"sensors","result":"ok","took":\d+,"via":"direct","provider":"ipmilan"`},
		{bmc.IPMIIpmitool, `"provider":"ipmitool","providers_attempted":["ipmitool"]`, `"op":"sensors","result":"ok","took":\d+,"via":"direct","provider":"ipmitool"`},
	} {
		e := newManager(t, bmc.Config{IPMIProvider: tc.provider})
		c, err := e.m.Open(ctx, ipmiEndpoint(n))
		require.NoError(t, err, tc.provider)
		st, err := c.PowerState(ctx)
		require.NoError(t, err, tc.provider)
		require.Equal(t, rackcloud.PowerOff, st)
		_, err = c.Sensors(ctx)
		require.NoError(t, err, tc.provider)
		logs := e.log.String()
		require.Contains(t, logs, tc.answers, tc.provider)
		require.Regexp(t, tc.sensors, logs, tc.provider)
	}
	_, err := bmc.New(bmc.Config{IPMIProvider: "snmp"})
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
}
