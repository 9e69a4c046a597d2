package ipmilan_test

import (
	"context"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc/ipmilan"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/rack"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startRack starts a rack of simulated servers for the test, stopped at
// its end.
func startRack(t *testing.T, cfg rack.Config) (*rack.Rack, context.Context) {
	t.Helper()
	labtest.Need(t, "ipmi_sim")
	cfg.Dir = t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	r, err := rack.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Stop()) })
	return r, ctx
}

func connOf(t *testing.T, n *rack.Node, password string, suite int) *ipmilan.Conn {
	t.Helper()
	c, err := ipmilan.New(ipmilan.Config{Host: n.IPMI.Addr().String(), Port: int(n.IPMI.Port()),
		Username: n.User, Password: password, CipherSuite: suite})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close(context.Background())) })
	return c
}

// TestAgainstIPMISim drives a real ipmi_sim (behind the lab's guard)
// through one session: power, boot device, sensors.
func TestAgainstIPMISim(t *testing.T) {
	r, ctx := startRack(t, rack.Config{Nodes: 1, Virtual: true})
	n := r.Nodes[0]
	c := connOf(t, n, n.Password, 3)
	require.NoError(t, c.Open(ctx))

	st, err := c.PowerStateGet(ctx)
	require.NoError(t, err)
	require.Equal(t, "off", st, "racked servers wait powered off")

	ok, err := c.BootDeviceSet(ctx, "pxe", true, true)
	require.NoError(t, err)
	require.True(t, ok)
	// ipmi_sim hands only the device to its chassis program and answers
	// Get System Boot Options from it: the persistent and EFI bits do not
	// come back (TestBootFlagsRequest checks they are sent).
	require.Equal(t, rack.BootPXE, n.BootOverride().Device)
	require.Equal(t, bootFlags{device: 0x01}, readBootFlags(t, ctx, n))
	ok, err = c.BootDeviceSet(ctx, "disk", false, false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, rack.BootDisk, n.BootOverride().Device)
	require.Equal(t, bootFlags{device: 0x02}, readBootFlags(t, ctx, n))

	setPower(t, ctx, c, n, "on", rackcloud.PowerOn)
	ok, err = c.PowerSet(ctx, "on")
	require.NoError(t, err, "on when on is a no-op")
	require.True(t, ok)

	exp := n.Sensors()
	// ipmi_sim reads its sensor files once a second.
	var got map[string]ipmilan.Reading
	labtest.Eventually(t, 30*time.Second, 200*time.Millisecond, "sensors follow the machine", func() (bool, string) {
		rs, err := c.Sensors(ctx)
		if err != nil {
			return false, err.Error()
		}
		got = map[string]ipmilan.Reading{}
		for _, r := range rs {
			got[r.Kind] = r
		}
		return got[ipmilan.KindTemperature].Value == float64(exp.TemperatureC) &&
			got[ipmilan.KindFan].Value == float64(exp.FanRPM) &&
			got[ipmilan.KindPower].Value == float64(exp.PowerWatts), ""
	})
	require.Equal(t, ipmilan.Reading{Name: "CPU Temp", Kind: ipmilan.KindTemperature, Value: float64(exp.TemperatureC), Unit: "C"}, got[ipmilan.KindTemperature])
	require.Equal(t, "Fan1", got[ipmilan.KindFan].Name)
	require.Equal(t, "RPM", got[ipmilan.KindFan].Unit)
	require.Equal(t, "W", got[ipmilan.KindPower].Unit)

	setPower(t, ctx, c, n, "off", rackcloud.PowerOff)

	require.NoError(t, c.Close(ctx))
	_, err = c.PowerStateGet(ctx)
	require.ErrorIs(t, err, ipmilan.ErrClosed)
}

// setPower changes the power and sees the machine and the BMC agree.
func setPower(t *testing.T, ctx context.Context, c *ipmilan.Conn, n *rack.Node, state string, want rackcloud.PowerState) {
	t.Helper()
	ok, err := c.PowerSet(ctx, state)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, n.WaitPower(ctx, want))
	st, err := c.PowerStateGet(ctx)
	require.NoError(t, err)
	require.Equal(t, string(want), st)
}

type bootFlags struct {
	persistent, efi bool
	device          byte // boot device selector
}

// readBootFlags reads the boot flags parameter on a session of its own.
func readBootFlags(t *testing.T, ctx context.Context, n *rack.Node) bootFlags {
	t.Helper()
	cl, err := client.NewClient(n.IPMI.Addr().String(), int(n.IPMI.Port()), n.User, n.Password)
	require.NoError(t, err)
	cl.WithCipherSuiteID(types.CipherSuiteID3)
	require.NoError(t, cl.Connect(ctx))
	defer cl.Close(ctx)
	res, err := cl.GetSystemBootOptionsParam(ctx, types.BootOptionParamSelector_BootFlags, 0, 0)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(res.ParamData), 2)
	return bootFlags{persistent: res.ParamData[0]&0x40 != 0, efi: res.ParamData[0]&0x20 != 0, device: res.ParamData[1] >> 2 & 0x0f}
}

// TestRefusals: a wrong password, an unknown user and a suite the BMC
// does not offer are told apart.
func TestRefusals(t *testing.T) {
	r, ctx := startRack(t, rack.Config{Nodes: 1, Virtual: true})
	n := r.Nodes[0]

	_, err := connOf(t, n, "wrong-password", 3).PowerStateGet(ctx)
	require.ErrorIs(t, err, ipmilan.ErrAuth, "%v", err)
	require.NotContains(t, err.Error(), "wrong-password")

	c, err := ipmilan.New(ipmilan.Config{Host: n.IPMI.Addr().String(), Port: int(n.IPMI.Port()), Username: "nobody", Password: n.Password})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	_, err = c.PowerStateGet(ctx)
	require.ErrorIs(t, err, ipmilan.ErrAuth, "%v", err)

	_, err = connOf(t, n, n.Password, 17).PowerStateGet(ctx)
	require.ErrorIs(t, err, ipmilan.ErrCipher, "%v", err)

	require.NoError(t, ctx.Err(), "each refusal is quick")
}
