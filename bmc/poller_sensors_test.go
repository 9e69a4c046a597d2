package bmc_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/rack"
)

// TestPollerSensors: the poller exports the BMCs' sensors, by host, with
// the values the simulated servers report, follows them when a server is
// powered on, and drops a removed host's series.
func TestPollerSensors(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 2, Virtual: true})
	e := newManager(t, bmc.Config{Timeout: 5 * time.Second})
	p := e.m.NewPoller(bmc.PollerConfig{Interval: 100 * time.Millisecond, SensorEvery: 1})
	a, b := r.Nodes[0], r.Nodes[1]
	require.NoError(t, p.Set("host-a", ipmiEndpoint(a)))
	require.NoError(t, p.Set("host-b", ipmiEndpoint(b)))
	runPoller(t, p)
	require.NoError(t, b.PowerOn())

	series := func(host string) map[string]float64 {
		return map[string]float64{
			"temp":  metric(t, e.reg, "ipmi_temperature_celsius", map[string]string{"host": host, "name": "CPU Temp"}),
			"fan":   metric(t, e.reg, "ipmi_fan_speed_rpm", map[string]string{"host": host, "name": "Fan1"}),
			"power": metric(t, e.reg, "ipmi_power_watts", map[string]string{"host": host, "name": "Power"}),
		}
	}
	want := func(n *rack.Node) map[string]float64 {
		s := n.Sensors()
		return map[string]float64{"temp": float64(s.TemperatureC), "fan": float64(s.FanRPM), "power": float64(s.PowerWatts)}
	}
	// ipmi_sim reads its sensor files once a second.
	for host, n := range map[string]*rack.Node{"host-a": a, "host-b": b} {
		labtest.Eventually(t, 30*time.Second, 100*time.Millisecond, host+" sensors exported", func() (bool, string) {
			got := series(host)
			return len(got) == 3 && got["temp"] == want(n)["temp"] && got["fan"] == want(n)["fan"] && got["power"] == want(n)["power"],
				fmt.Sprint("got ", got)
		})
	}
	require.NotEqual(t, want(a), want(b), "one on, one off")
	res := p.Results()["host-b"]
	require.NoError(t, res.SensorsErr)

	p.Remove("host-b")
	for k, v := range series("host-b") {
		require.Equal(t, -1.0, v, "host-b's %s series is gone", k)
	}
	require.Equal(t, want(a), series("host-a"), "host-a's series stay")
}
