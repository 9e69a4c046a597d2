package bmc_test

import (
	"context"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/rack"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func startRack(t *testing.T, cfg rack.Config) *rack.Rack {
	t.Helper()
	labtest.Need(t, "ipmi_sim", "ipmitool")
	cfg.Dir = t.TempDir()
	r, err := rack.Start(ctxT(t, 60*time.Second), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Stop()) })
	return r
}

type env struct {
	m   *bmc.Manager
	reg *prometheus.Registry
	log *labtest.LogBuffer
}

func newManager(t *testing.T, cfg bmc.Config) *env {
	t.Helper()
	e := &env{reg: prometheus.NewRegistry(), log: &labtest.LogBuffer{}}
	cfg.Registerer = e.reg
	cfg.Logger = slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := bmc.New(cfg)
	require.NoError(t, err)
	e.m = m
	t.Cleanup(func() { require.NoError(t, m.Close(context.Background())) })
	return e
}

func ipmiEndpoint(n *rack.Node) bmc.Endpoint {
	return bmc.Endpoint{Protocol: rackcloud.BMCIPMI, Address: n.IPMI.String(), Username: n.User, Password: bmc.NewSecret(n.Password)}
}

func redfishEndpoint(n *rack.Node) bmc.Endpoint {
	return bmc.Endpoint{Protocol: rackcloud.BMCRedfish, Address: n.Redfish.String(), Username: n.User, Password: bmc.NewSecret(n.Password)}
}

// TestPXEBootThroughBMC powers two simulated servers on with boot device
// PXE, one through IPMI (ipmi_sim + ipmitool) and one through Redfish, and
// sees each QEMU ask for an address over DHCP; then powers them off. The
// Redfish one is looked for by the MAC its BMC reports (NICs), which must
// be the one its PXE boot sends.
func TestPXEBootThroughBMC(t *testing.T) {
	labtest.Need(t, "qemu-system-x86_64")
	pnet := labtest.Net(t, "bmct", "10.78.0.1/24")
	logf := labtest.Dnsmasq(t, pnet)
	r := startRack(t, rack.Config{Nodes: 2, Net: pnet, Redfish: true})
	e := newManager(t, bmc.Config{RootCAs: r.CertPool()})
	ctx := ctxT(t, 150*time.Second)

	type tc struct {
		name string
		node *rack.Node
		ep   bmc.Endpoint
	}
	cases := []tc{
		{"ipmi", r.Nodes[0], ipmiEndpoint(r.Nodes[0])},
		{"redfish", r.Nodes[1], redfishEndpoint(r.Nodes[1])},
	}
	clients := map[string]*bmc.Client{}
	macs := map[string]string{"ipmi": r.Nodes[0].MAC.String()}
	for _, c := range cases {
		cl, err := e.m.Open(ctx, c.ep)
		require.NoError(t, err, c.name)
		clients[c.name] = cl
		st, err := cl.PowerState(ctx)
		require.NoError(t, err, c.name)
		require.Equal(t, rackcloud.PowerOff, st, "%s: racked servers wait powered off", c.name)
		if c.ep.Protocol == rackcloud.BMCRedfish {
			nics, err := cl.NICs(ctx)
			require.NoError(t, err, c.name)
			require.Len(t, nics, 1, c.name)
			macs[c.name] = nics[0].MAC
		}

		require.NoError(t, cl.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}), c.name)
		require.Equal(t, rack.BootPXE, c.node.BootOverride().Device, c.name)
		require.NoError(t, cl.EnsurePower(ctx, rackcloud.PowerOn), c.name)
		m := c.node.Machine()
		require.NotNil(t, m, "%s: a QEMU process appears", c.name)
		// The boot order QEMU was started with (from its spec: reading
		// /proc/PID/cmdline raced the exec of ip netns exec under load, and
		// read empty); the DHCPDISCOVER below proves it booted from the
		// network.
		args, err := m.Spec.Args()
		require.NoError(t, err)
		require.Regexp(t, `mac=[0-9a-f:]+,bootindex=0`, strings.Join(args, " "), "%s: network first", c.name)
	}
	for _, c := range cases {
		re := regexp.MustCompile(`DHCPDISCOVER\(` + pnet.Bridge + `\) ` + regexp.QuoteMeta(macs[c.name]))
		require.Eventually(t, func() bool {
			b, _ := os.ReadFile(logf)
			return re.Match(b)
		}, 100*time.Second, 250*time.Millisecond, "%s: DHCPDISCOVER from %s", c.name, macs[c.name])
	}
	for _, c := range cases {
		m := c.node.Machine()
		require.NoError(t, clients[c.name].EnsurePower(ctx, rackcloud.PowerOff), c.name)
		require.Nil(t, c.node.Machine(), c.name)
		select { // reaped
		case <-m.Done():
		case <-ctx.Done():
			t.Fatalf("%s: QEMU %d not reaped after power off: %v", c.name, m.PID(), context.Cause(ctx))
		}
	}

	// Every call was measured and logged with the provider that answered.
	require.Equal(t, 2.0, metric(t, e.reg, "rackcloud_bmc_requests_total", map[string]string{"op": "set-boot", "result": "ok"}))
	require.Equal(t, 1.0, metric(t, e.reg, "rackcloud_bmc_up", map[string]string{"bmc": cases[0].ep.String()}))
	logs := e.log.String()
	require.Contains(t, logs, `"provider":"ipmilan"`, "IPMI calls answered by the native provider")
	require.Contains(t, logs, `"provider":"gofish"`)
	require.NotContains(t, logs, r.Password())
}

// metric returns the value of the series name{labels} (counter, gauge, or
// a histogram's count), or -1 when there is none.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}
