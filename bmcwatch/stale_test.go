package bmcwatch_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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

// watchEnv is one node of a real rack (ipmi_sim), a real database, one
// host on that node's IPMI BMC, and a Watcher polling it.
type watchEnv struct {
	ctx    context.Context
	node   *rack.Node
	pool   *pgxpool.Pool
	sealer *store.Sealer
	host   rackcloud.Host
	reg    *prometheus.Registry
	logs   *labtest.LogBuffer
}

func newWatchEnv(t *testing.T, interval, refresh time.Duration) *watchEnv {
	t.Helper()
	labtest.Need(t, "ipmi_sim", "ipmitool")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	r, err := rack.Start(ctx, rack.Config{Nodes: 1, Virtual: true, Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Stop() })
	e := &watchEnv{ctx: ctx, node: r.Nodes[0], pool: pgtest.DB(t), reg: prometheus.NewRegistry(), logs: &labtest.LogBuffer{}}
	e.sealer, err = store.NewSealer(bytes.Repeat([]byte{5}, store.SecretKeySize))
	require.NoError(t, err)
	n := e.node
	e.host, err = store.CreateHost(ctx, e.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "node1"},
		BMC: &rackcloud.BMC{Protocol: rackcloud.BMCIPMI, Address: n.IPMI.String(), Username: n.User}})
	require.NoError(t, err)
	e.setPassword(t, n.Password)

	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := bmc.New(bmc.Config{Timeout: 5 * time.Second, BackoffMin: 100 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Logger: log})
	require.NoError(t, err)
	w, err := bmcwatch.New(bmcwatch.Config{Pool: e.pool, Sealer: e.sealer, Manager: m, Interval: interval,
		Refresh: refresh, Registerer: e.reg, Logger: log})
	require.NoError(t, err)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(wctx)
		m.Close(context.Background())
	}()
	t.Cleanup(func() { stop(); <-done })
	return e
}

// setPassword changes the host's BMC password the way PUT
// /v1/hosts/{id}/bmc does: in one transaction, the BMC record (health
// unknown until the next poll) and the sealed password.
func (e *watchEnv) setPassword(t *testing.T, password string) {
	t.Helper()
	require.NoError(t, store.InTx(e.ctx, e.pool, func(tx pgx.Tx) error {
		h, err := store.GetHost(e.ctx, tx, e.host.ID)
		if err != nil {
			return err
		}
		if _, err := store.SetHostBMC(e.ctx, tx, h); err != nil {
			return err
		}
		sealed, err := e.sealer.Seal(password, []byte(h.ID))
		if err != nil {
			return err
		}
		return store.SetHostBMCSecret(e.ctx, tx, h.ID, sealed)
	}))
}

func (e *watchEnv) get(t *testing.T) rackcloud.Host {
	t.Helper()
	h, err := store.GetHost(e.ctx, e.pool, e.host.ID)
	require.NoError(t, err)
	return h
}

// TestCredentialsChangedDuringPoll: a poll is held in flight inside the
// real BMC (ipmi_sim waits on its chassis program) with the good password;
// meanwhile the operator sets a wrong one. The poll, released, answers
// "healthy" with the old password: that result is discarded and counted,
// never written, and the next poll, made with the new password, is the one
// recorded.
func TestCredentialsChangedDuringPoll(t *testing.T) {
	e := newWatchEnv(t, 200*time.Millisecond, time.Minute)
	labtest.Eventually(t, 60*time.Second, 20*time.Millisecond, "the good password polled", func() (bool, string) {
		h := e.get(t)
		return h.BMC.Healthy && h.Power == rackcloud.PowerOff, h.BMC.Error
	})

	hold := make(chan struct{})
	e.node.SetFault(rack.Fault{Hold: hold})
	labtest.Eventually(t, 30*time.Second, 5*time.Millisecond, "a poll in flight", func() (bool, string) {
		return e.node.Held() > 0, ""
	})
	before := value(t, e.reg, "rackcloud_bmcwatch_stale_results_total")
	version := e.get(t).Version
	e.setPassword(t, "not-"+e.node.Password)
	require.False(t, e.get(t).BMC.Healthy, "health unknown after the change")
	e.node.SetFault(rack.Fault{})
	close(hold)

	const wrong = "wrong user or password (IPMI, cipher suite 3)"
	labtest.Eventually(t, 60*time.Second, 5*time.Millisecond, "the new password's result recorded", func() (bool, string) {
		h := e.get(t)
		require.False(t, h.BMC.Healthy, "the old password's result was written")
		return h.BMC.Error == wrong, h.BMC.Error
	})
	require.GreaterOrEqual(t, value(t, e.reg, "rackcloud_bmcwatch_stale_results_total"), before+1, "the in-flight result was discarded and counted")
	require.Contains(t, e.logs.String(), "stale poll result discarded")
	require.Contains(t, e.logs.String(), "host="+e.host.ID, "the log names the host")
	require.NotContains(t, e.logs.String(), e.node.Password, "no password in the logs")
	require.Equal(t, version+1, e.get(t).Version, "only the operator's change is a new version")
}

// TestWrongPasswordSeenWithinOnePollInterval: a wrong password set while
// the watcher waits for the next poll shows up, as one clear line, well
// within one poll interval: the change wakes the watcher (LISTEN/NOTIFY),
// which polls that BMC at once. The interval is long and the refresh
// longer, so neither a scheduled poll (at least 0.8 intervals after the
// last, with jitter) nor a refresh can be what records it before the
// deadline of half an interval.
func TestWrongPasswordSeenWithinOnePollInterval(t *testing.T) {
	const interval = 40 * time.Second
	e := newWatchEnv(t, interval, 10*time.Minute)
	labtest.Eventually(t, interval, 20*time.Millisecond, "the first poll", func() (bool, string) {
		h := e.get(t)
		return h.BMC.Healthy, h.BMC.Error
	})
	e.setPassword(t, "not-"+e.node.Password)
	labtest.Eventually(t, interval/2, 20*time.Millisecond, "the wrong password seen", func() (bool, string) {
		h := e.get(t)
		return h.BMC.Error == "wrong user or password (IPMI, cipher suite 3)", h.BMC.Error
	})
	require.Zero(t, value(t, e.reg, "rackcloud_bmcwatch_results_dropped_total"))
}
