// Package srvtest runs a real rackcloud server for tests: on loopback,
// with a fresh database from pgtest (the test binary's TestMain must call
// pgtest.Main), and the inventory a monitoring test needs.
package srvtest

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/monitor"
	"github.com/rackcloud/rackcloud/server"
	"github.com/rackcloud/rackcloud/store"
)

// Start runs a server with mon as its monitoring configuration (MaxAge
// 200 ms unless set), no task workers, BMC polling or guest reconciler,
// and returns it once /readyz answers; the test's cleanup stops it.
func Start(t testing.TB, mon monitor.Config) *server.Server {
	t.Helper()
	if mon.MaxAge == 0 {
		mon.MaxAge = 200 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, server.Config{Listen: "127.0.0.1:0", DatabaseURL: pgtest.URL(t), RetryMax: 500 * time.Millisecond,
		TaskWorkers: -1, BMCPollInterval: -1, GuestReconcile: -1, Monitor: mon}, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	require.NoError(t, s.Listen())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	labtest.Eventually(t, 30*time.Second, 50*time.Millisecond, "the server to be ready", func() (bool, string) {
		resp, err := http.Get("http://" + s.Addr() + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return s
}

// Rack creates region "lab", zone "z1" and rack "r1" (42 positions) and
// returns the rack.
func Rack(t testing.TB, q store.Querier) rackcloud.Rack {
	t.Helper()
	ctx := context.Background()
	reg, err := store.CreateRegion(ctx, q, rackcloud.Region{Meta: rackcloud.Meta{Name: "lab"}})
	require.NoError(t, err)
	z, err := store.CreateZone(ctx, q, rackcloud.Zone{Meta: rackcloud.Meta{Name: "z1"}, RegionID: reg.ID})
	require.NoError(t, err)
	r, err := store.CreateRack(ctx, q, rackcloud.Rack{Meta: rackcloud.Meta{Name: "r1"}, ZoneID: z.ID, Positions: 42})
	require.NoError(t, err)
	return r
}
