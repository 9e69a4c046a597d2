package bmcwatch_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/bmcwatch"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/lab/rack"
	"github.com/rackcloud/rackcloud/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type observed struct {
	power   rackcloud.PowerState
	healthy bool
	err     string
	version int64
}

// TestWatchRecordsPowerAndHealth polls real BMCs (ipmi_sim over IPMI and
// the lab's Redfish BMC) and a BMC that does not answer and one that
// refuses the password, and checks what lands in the hosts table; a
// second replica stands by and takes over when the first stops.
func TestWatchRecordsPowerAndHealth(t *testing.T) {
	labtest.Need(t, "ipmi_sim", "ipmitool")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := rack.Start(ctx, rack.Config{Nodes: 2, Virtual: true, Redfish: true, Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Stop() })
	pool := pgtest.DB(t)
	sealer, err := store.NewSealer(bytes.Repeat([]byte{3}, store.SecretKeySize))
	require.NoError(t, err)

	// A UDP port nobody answers on.
	dead, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := dead.LocalAddr().String()
	require.NoError(t, dead.Close())

	n1, n2 := r.Nodes[0], r.Nodes[1]
	hosts := map[string]string{}
	add := func(name string, b rackcloud.BMC) {
		h, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: name}, BMC: &b})
		require.NoError(t, err)
		sealed, err := sealer.Seal(b.Password, []byte(h.ID))
		require.NoError(t, err)
		require.NoError(t, store.SetHostBMCSecret(ctx, pool, h.ID, sealed))
		hosts[name] = h.ID
	}
	add("ipmi", rackcloud.BMC{Protocol: rackcloud.BMCIPMI, Address: n1.IPMI.String(), Username: n1.User, Password: n1.Password})
	add("redfish", rackcloud.BMC{Protocol: rackcloud.BMCRedfish, Address: strings.TrimPrefix(n2.RedfishURL, "https://"), Username: n2.User, Password: n2.Password})
	add("silent", rackcloud.BMC{Protocol: rackcloud.BMCIPMI, Address: deadAddr, Username: "admin", Password: "x"})
	add("wrong-password", rackcloud.BMC{Protocol: rackcloud.BMCIPMI, Address: n2.IPMI.String(), Username: n2.User, Password: "not-" + n2.Password})
	// A host without a BMC is left alone.
	plain, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "plain"}, MACs: []string{"52:54:00:cc:00:01"}})
	require.NoError(t, err)

	get := func(id string) observed {
		var o observed
		require.NoError(t, pool.QueryRow(ctx, `SELECT power, bmc_healthy, bmc_error, version FROM hosts WHERE id = $1`, id).
			Scan(&o.power, &o.healthy, &o.err, &o.version))
		return o
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		labtest.Eventually(t, 90*time.Second, 100*time.Millisecond, what, func() (bool, string) {
			obs := map[string]observed{}
			for n, id := range hosts {
				obs[n] = get(id)
			}
			return cond(), fmt.Sprintf("%+v", obs)
		})
	}

	start := func(reg *prometheus.Registry) (*bmcwatch.Watcher, context.CancelFunc, chan struct{}) {
		m, err := bmc.New(bmc.Config{Timeout: 3 * time.Second, BackoffMin: 200 * time.Millisecond, BackoffMax: time.Second,
			RootCAs: r.CertPool()})
		require.NoError(t, err)
		w, err := bmcwatch.New(bmcwatch.Config{Pool: pool, Sealer: sealer, Manager: m, Interval: 300 * time.Millisecond,
			Refresh: 200 * time.Millisecond, Registerer: reg})
		require.NoError(t, err)
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = w.Run(wctx)
			m.Close(context.Background())
		}()
		return w, stop, done
	}
	reg1, reg2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	_, stop1, done1 := start(reg1)

	waitFor("every BMC polled", func() bool {
		ok := get(hosts["ipmi"]).power == rackcloud.PowerOff && get(hosts["ipmi"]).healthy &&
			get(hosts["redfish"]).power == rackcloud.PowerOff && get(hosts["redfish"]).healthy
		s, wp := get(hosts["silent"]), get(hosts["wrong-password"])
		return ok && !s.healthy && s.err != "" && !wp.healthy && wp.err != ""
	})
	require.Equal(t, observed{power: rackcloud.PowerUnknown, err: "no answer from " + deadAddr + " in 3s", version: 1},
		get(hosts["silent"]), "one short line; an observation is not a new version")
	require.Equal(t, observed{power: rackcloud.PowerUnknown, err: "wrong user or password (IPMI, cipher suite 3)", version: 1},
		get(hosts["wrong-password"]))
	require.Equal(t, observed{power: rackcloud.PowerUnknown, version: 1}, get(plain.ID), "a host without a BMC is not touched")
	require.Equal(t, 1.0, value(t, reg1, "rackcloud_bmcwatch_leader"))

	// A second replica stands by while the first polls.
	_, stop2, done2 := start(reg2)
	defer func() { stop2(); <-done2 }()
	waitFor("the standby to find the lock held", func() bool {
		return counter(t, reg2, "rackcloud_bmcwatch_lock_attempts_total", "held") >= 2
	})
	require.Equal(t, 0.0, value(t, reg2, "rackcloud_bmcwatch_leader"))

	// Power changes made behind rackcloud's back show up.
	m, err := bmc.New(bmc.Config{RootCAs: r.CertPool()})
	require.NoError(t, err)
	defer m.Close(context.Background())
	c, err := m.Open(ctx, bmc.Endpoint{Protocol: rackcloud.BMCIPMI, Address: n1.IPMI.String(), Username: n1.User, Password: bmc.NewSecret(n1.Password)})
	require.NoError(t, err)
	before := get(hosts["ipmi"])
	require.NoError(t, c.SetPower(ctx, bmc.PowerOn))
	waitFor("the power-on seen", func() bool { return get(hosts["ipmi"]).power == rackcloud.PowerOn })
	require.Equal(t, before.version, get(hosts["ipmi"]).version, "an observed power change is not a new version (ETag)")

	// The first replica stops: the second takes over and sees the next change.
	stop1()
	<-done1
	require.NoError(t, c.SetPower(ctx, bmc.PowerOff))
	waitFor("the standby polling", func() bool { return get(hosts["ipmi"]).power == rackcloud.PowerOff })
	require.Equal(t, 1.0, value(t, reg2, "rackcloud_bmcwatch_leader"))

	// The operator fixes the password: the BMC turns healthy.
	h, err := store.GetHost(ctx, pool, hosts["wrong-password"])
	require.NoError(t, err)
	sealed, err := sealer.Seal(n2.Password, []byte(h.ID))
	require.NoError(t, err)
	require.NoError(t, store.SetHostBMCSecret(ctx, pool, h.ID, sealed))
	waitFor("the fixed credentials used", func() bool {
		o := get(hosts["wrong-password"])
		return o.healthy && o.err == "" && o.power == rackcloud.PowerOff
	})
}

// counter reads the value of name{result=result} from reg (0 when absent).
func counter(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// value reads the unlabelled gauge or counter name from reg.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
