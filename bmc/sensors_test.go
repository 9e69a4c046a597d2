package bmc_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/rack"
)

func byKind(ss []bmc.Sensor) map[bmc.SensorKind]bmc.Sensor {
	m := map[bmc.SensorKind]bmc.Sensor{}
	for _, s := range ss {
		m[s.Kind] = s
	}
	return m
}

// TestSensorsAndIdentity reads the simulated BMCs' sensors (which follow
// the machine's power) and identity, over IPMI and Redfish.
func TestSensorsAndIdentity(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 2, Virtual: true, Redfish: true})
	e := newManager(t, bmc.Config{Timeout: 10 * time.Second, RootCAs: r.CertPool()})
	ctx := ctxT(t, 2*time.Minute)
	n := r.Nodes[1]
	for _, ep := range []bmc.Endpoint{ipmiEndpoint(n), redfishEndpoint(n)} {
		c, err := e.m.Open(ctx, ep)
		require.NoError(t, err, ep.String())

		id, err := c.Identity(ctx)
		require.NoError(t, err, ep.String())
		require.Equal(t, ep.Protocol, id.Protocol)
		require.NotEmpty(t, id.Manufacturer, ep.String())
		require.NotEmpty(t, id.Firmware, ep.String())
		require.NotEmpty(t, id.GUID, ep.String())
		require.NotEmpty(t, id.ProtocolVersion, ep.String())

		for _, want := range []rackcloud.PowerState{rackcloud.PowerOn, rackcloud.PowerOff} {
			require.NoError(t, c.EnsurePower(ctx, want), ep.String())
			exp := n.Sensors()
			// ipmi_sim reads its sensor files once a second.
			var got map[bmc.SensorKind]bmc.Sensor
			require.Eventually(t, func() bool {
				ss, err := c.Sensors(ctx)
				if err != nil {
					t.Logf("%s: %v", ep, err)
					return false
				}
				got = byKind(ss)
				return got[bmc.SensorTemperature].Value == float64(exp.TemperatureC) &&
					got[bmc.SensorFan].Value == float64(exp.FanRPM) &&
					got[bmc.SensorPower].Value == float64(exp.PowerWatts)
			}, 30*time.Second, 300*time.Millisecond, "%s %s: want %+v, got %+v", ep, want, exp, got)
			require.Equal(t, "C", got[bmc.SensorTemperature].Unit)
			require.Equal(t, "RPM", got[bmc.SensorFan].Unit)
			require.Equal(t, "W", got[bmc.SensorPower].Unit)
		}
	}
	require.Greater(t, metric(t, e.reg, "rackcloud_bmc_requests_total", map[string]string{"op": "sensors", "result": "ok"}), 3.0)
	require.NotContains(t, e.log.String(), r.Password())
}

// TestBootDeviceOptions checks once/persistent and disk/PXE end up where
// the simulated machine reads them.
func TestBootDeviceOptions(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 1, Virtual: true, Redfish: true})
	e := newManager(t, bmc.Config{RootCAs: r.CertPool()})
	ctx := ctxT(t, time.Minute)
	n := r.Nodes[0]
	rf, err := e.m.Open(ctx, redfishEndpoint(n))
	require.NoError(t, err)
	require.NoError(t, rf.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{Persistent: true, EFI: true}))
	require.Equal(t, rack.Boot{Device: rack.BootPXE, Persistent: true, UEFI: true}, n.BootOverride())
	require.NoError(t, rf.SetBootDevice(ctx, bmc.BootDisk, bmc.BootOptions{}))
	require.Equal(t, rack.Boot{Device: rack.BootDisk}, n.BootOverride())

	ipmi, err := e.m.Open(ctx, ipmiEndpoint(n))
	require.NoError(t, err)
	require.NoError(t, ipmi.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}))
	require.Equal(t, rack.BootPXE, n.BootOverride().Device)
	require.NoError(t, ipmi.EnsurePower(ctx, rackcloud.PowerOn))
	require.Equal(t, rack.BootNone, n.BootOverride().Device, "a one-shot override is consumed by the boot")
	require.NoError(t, ipmi.SetPower(ctx, bmc.PowerReset))
	require.Equal(t, 2, n.Starts())
	require.NoError(t, ipmi.SetPower(ctx, bmc.PowerCycle))
	require.NoError(t, ipmi.WaitPower(ctx, rackcloud.PowerOn))
	require.Eventually(t, func() bool { return n.Starts() == 3 }, 20*time.Second, 50*time.Millisecond)
	require.NoError(t, rf.SetPower(ctx, bmc.PowerCycle))
	require.Equal(t, 4, n.Starts())
	require.NoError(t, rf.EnsurePower(ctx, rackcloud.PowerOff))
	require.NoError(t, rf.SetPower(ctx, bmc.PowerCycle), "cycle powers on a machine that is off")
	require.NoError(t, rf.WaitPower(ctx, rackcloud.PowerOn))
	require.NoError(t, rf.EnsurePower(ctx, rackcloud.PowerOff))
}
