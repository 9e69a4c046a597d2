// Package srvtest runs a real rackcloud server for tests: on loopback,
// with a fresh database from pgtest (the test binary's TestMain must call
// pgtest.Main), and the inventory a monitoring test needs.
package srvtest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
// and returns it once it is ready; the test's cleanup stops it.
func Start(t testing.TB, mon monitor.Config) *server.Server {
	t.Helper()
	if mon.MaxAge == 0 {
		mon.MaxAge = 200 * time.Millisecond
	}
	return Run(t, context.Background(), server.Config{TaskWorkers: -1, BMCPollInterval: -1, GuestReconcile: -1, Monitor: mon}).Server
}

// Server is a running test server.
type Server struct {
	*server.Server
	// URL is http://<addr>; Token is an admin token's secret.
	URL, Token string
}

// Run runs a server with cfg until the test ends (Listen, DatabaseURL,
// RetryMax, BootstrapTokenFile and, without a SecretKeyFile,
// InsecureThrowawayKey are filled in) and returns it once its database is
// ready and its admin token written.
func Run(t testing.TB, ctx context.Context, cfg server.Config) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = pgtest.URL(t)
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 500 * time.Millisecond
	}
	if cfg.BootstrapTokenFile == "" {
		cfg.BootstrapTokenFile = filepath.Join(t.TempDir(), "admin.token")
	}
	if cfg.SecretKeyFile == "" {
		cfg.InsecureThrowawayKey = true
	}
	ctx, cancel := context.WithCancel(ctx)
	s, err := server.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	require.NoError(t, s.Listen())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	var token []byte
	labtest.Eventually(t, time.Minute, 50*time.Millisecond, "the server's database and admin token", func() (bool, string) {
		token, err = os.ReadFile(cfg.BootstrapTokenFile)
		return err == nil && len(token) > 0, fmt.Sprint(err)
	})
	return &Server{Server: s, URL: "http://" + s.Addr(), Token: strings.TrimSpace(string(token))}
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
