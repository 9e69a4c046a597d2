// Package servertest runs a real rackcloud server in-process for tests:
// its own database (lab/pgtest), listening on loopback, with an admin
// token.
package servertest

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

	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/server"
)

// Server is a running test server.
type Server struct {
	*server.Server
	// URL is http://<addr>; Token is an admin token's secret.
	URL, Token string
}

// Start starts a server with cfg (Listen, DatabaseURL, RetryMax,
// BootstrapTokenFile and InsecureThrowawayKey are filled in when empty)
// until the test ends; the package's TestMain must call pgtest.Main.
func Start(t *testing.T, ctx context.Context, cfg server.Config) *Server {
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
	srv, err := server.New(ctx, cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})
	var token []byte
	labtest.Eventually(t, time.Minute, 100*time.Millisecond, "the bootstrap token", func() (bool, string) {
		token, err = os.ReadFile(cfg.BootstrapTokenFile)
		return err == nil && len(token) > 0, fmt.Sprint(err)
	})
	return &Server{Server: srv, URL: "http://" + srv.Addr(), Token: strings.TrimSpace(string(token))}
}
