// Package lab brings the whole system up on one machine for operators and
// demos (`make run`): a PostgreSQL cluster, Prometheus, Alertmanager and the
// node exporter from Debian's packages, and the rackcloud server itself, each
// on loopback under one state directory, all stopped by PID on the way out.
// Its subpackages are the harness the tests use: netns, qemu, postgres,
// pgtest, monlab, proc.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rackcloud/rackcloud/lab/monlab"
	"github.com/rackcloud/rackcloud/lab/postgres"
	"github.com/rackcloud/rackcloud/server"
)

// Default ports of `rackcloud lab`.
const (
	DefaultAPIPort          = 8080
	DefaultPostgresPort     = 15432
	DefaultPrometheusPort   = 19090
	DefaultAlertmanagerPort = 19093
	DefaultNodeExporterPort = 19100
)

// Config is the lab's configuration.
type Config struct {
	// Dir is the state directory; the database survives restarts there.
	Dir                                                                       string
	APIPort, PostgresPort, PrometheusPort, AlertmanagerPort, NodeExporterPort int
}

// Lab is a running lab.
type Lab struct {
	Config
	Postgres *postgres.Cluster
	Monitor  *monlab.Stack
	Server   *server.Server
	APIURL   string
	stops    []func()
}

// Up starts everything and returns when all of it is ready.
func Up(ctx context.Context, c Config, log *slog.Logger) (l *Lab, err error) {
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, err
	}
	c.Dir = dir
	for _, p := range []int{c.APIPort, c.PostgresPort, c.PrometheusPort, c.AlertmanagerPort, c.NodeExporterPort} {
		if err := portFree(p); err != nil {
			return nil, err
		}
	}
	l = &Lab{Config: c, APIURL: "http://127.0.0.1:" + strconv.Itoa(c.APIPort)}
	defer func() {
		if err != nil {
			l.Down()
		}
	}()
	log.Info("lab: starting PostgreSQL", "port", c.PostgresPort)
	l.Postgres, err = postgres.Start(ctx, postgres.Config{Dir: filepath.Join(dir, "postgres"), Port: c.PostgresPort, Durable: true})
	if err != nil {
		return l, err
	}
	l.stops = append(l.stops, l.Postgres.Stop)
	if err := l.Postgres.CreateDatabase(ctx, "rackcloud"); err != nil {
		return l, err
	}

	log.Info("lab: starting the rackcloud server", "port", c.APIPort)
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	l.Server, err = server.New(srvCtx, server.Config{Listen: "127.0.0.1:" + strconv.Itoa(c.APIPort),
		DatabaseURL: l.Postgres.URL("rackcloud")}, log)
	if err != nil {
		stopSrv()
		return l, err
	}
	if err := l.Server.Listen(); err != nil {
		stopSrv()
		return l, err
	}
	done := make(chan error, 1)
	go func() { done <- l.Server.Run(srvCtx) }()
	l.stops = append(l.stops, func() {
		stopSrv()
		if err := <-done; err != nil {
			log.Error("lab: server", "err", err)
		}
	})

	log.Info("lab: starting Prometheus, Alertmanager and the node exporter")
	l.Monitor, err = monlab.Start(ctx, monlab.Config{Dir: filepath.Join(dir, "monitoring"),
		PrometheusPort: c.PrometheusPort, AlertmanagerPort: c.AlertmanagerPort, NodeExporterPort: c.NodeExporterPort,
		RackcloudTargets: []string{"127.0.0.1:" + strconv.Itoa(c.APIPort)}})
	if err != nil {
		return l, err
	}
	l.stops = append(l.stops, l.Monitor.Stop)
	return l, l.waitReady(ctx)
}

func (l *Lab) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		resp, err := httpGet(ctx, l.APIURL+"/readyz")
		if err == nil && resp == 200 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rackcloud server not ready: %w", context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Print writes where everything is.
func (l *Lab) Print(w io.Writer) {
	fmt.Fprintf(w, `
rackcloud lab is up (state in %s)

  API            %s/v1/regions
  OpenAPI        %s/openapi.json   (docs: %s/docs)
  health         %s/healthz  %s/readyz
  metrics        %s/metrics
  PostgreSQL     %s
  Prometheus     %s   (targets: %s/targets)
  Alertmanager   %s
  node exporter  %s/metrics

Ctrl-C stops everything.
`, l.Dir, l.APIURL, l.APIURL, l.APIURL, l.APIURL, l.APIURL, l.APIURL, l.Postgres.URL("rackcloud"),
		l.Monitor.PrometheusURL, l.Monitor.PrometheusURL, l.Monitor.AlertmanagerURL, l.Monitor.NodeExporterURL)
}

// Down stops everything that was started, in reverse order. Safe to call
// twice.
func (l *Lab) Down() {
	for i := len(l.stops) - 1; i >= 0; i-- {
		l.stops[i]()
	}
	l.stops = nil
}

func portFree(p int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return fmt.Errorf("port %d is in use (is another lab running? pick other ports with flags): %w", p, err)
		}
		return err
	}
	return ln.Close()
}
