package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffyaml"

	"github.com/rackcloud/rackcloud/availability"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/monitor"
	"github.com/rackcloud/rackcloud/provisioner"
	"github.com/rackcloud/rackcloud/server"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

func init() {
	register(command{name: "server", summary: "run the API server, workers and controllers", run: runServer})
	register(command{name: "migrate", summary: "apply database migrations and exit", run: runMigrate})
}

// common flags shared by the commands that talk to the database.
type commonFlags struct {
	databaseURL string
	logLevel    string
	logFormat   string
}

func (c *commonFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&c.databaseURL, "database-url", server.DefaultDatabaseURL, "PostgreSQL connection string (env RACKCLOUD_DATABASE_URL)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error (env RACKCLOUD_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json (env RACKCLOUD_LOG_FORMAT)")
	fs.String("config", "", "optional YAML file whose keys are these flag names (env RACKCLOUD_CONFIG); flags beat environment beats file")
}

func (c *commonFlags) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", c.logLevel, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(c.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.logFormat)
}

// parse parses flags, then RACKCLOUD_* environment variables, then the
// YAML config file, in that order of precedence.
func parse(fs *flag.FlagSet, args []string) error {
	return ff.Parse(fs, args,
		ff.WithEnvVarPrefix("RACKCLOUD"),
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(ffyaml.Parser),
	)
}

func runServer(ctx context.Context, args []string) error {
	fs := newFlagSet("rackcloud server", "", "Runs the API server, the task workers and the controllers.")
	var common commonFlags
	common.bind(fs)
	cfg := server.Config{}
	fs.StringVar(&cfg.Listen, "listen", server.DefaultListen, "HTTP address for the API, /healthz, /readyz and /metrics (env RACKCLOUD_LISTEN)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "how long a graceful shutdown may take (env RACKCLOUD_SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&cfg.RetryMax, "db-retry-max", server.DefaultRetryMax, "longest wait between database connection attempts (env RACKCLOUD_DB_RETRY_MAX)")
	fs.StringVar(&cfg.SecretKeyFile, "secret-key-file", "", "file of the keys that seal BMC passwords at rest (hex, one per line, the first seals); created with a random key when missing. Without it the server refuses BMC passwords (env RACKCLOUD_SECRET_KEY_FILE)")
	fs.BoolVar(&cfg.InsecureThrowawayKey, "insecure-throwaway-key", false, "without --secret-key-file, seal BMC passwords with a key that dies with the process: they are unreadable after a restart (env RACKCLOUD_INSECURE_THROWAWAY_KEY)")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert-file", "", "PEM certificate (chain) to serve HTTPS with; needs --tls-key-file (env RACKCLOUD_TLS_CERT_FILE)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file (env RACKCLOUD_TLS_KEY_FILE)")
	fs.StringVar(&cfg.BootstrapTokenFile, "bootstrap-token-file", "", "when set and the file is missing, write a new admin token there (mode 0600) once the database is ready (env RACKCLOUD_BOOTSTRAP_TOKEN_FILE)")
	fs.IntVar(&cfg.TaskWorkers, "task-workers", 0, "tasks this server runs at once; 0 for the engine's default, negative for none (API only) (env RACKCLOUD_TASK_WORKERS)")
	fs.DurationVar(&cfg.BMCPollInterval, "bmc-poll-interval", bmc.DefaultPollInterval, "how often each host's BMC is polled for power state and health (jittered, backing off from failing BMCs); negative turns polling off (env RACKCLOUD_BMC_POLL_INTERVAL)")
	fs.StringVar(&cfg.BMCCAFile, "bmc-ca-file", "", "PEM file of the CA(s) that sign Redfish BMCs' certificates; empty uses the system's roots (env RACKCLOUD_BMC_CA_FILE)")
	fs.DurationVar(&cfg.InspectTimeout, "inspect-timeout", provisioner.DefaultInspectTimeout, "how long a host being inspected may take to report its inventory once powered on, before it fails with agent_timeout (env RACKCLOUD_INSPECT_TIMEOUT)")
	fs.DurationVar(&cfg.InstallTimeout, "install-timeout", provisioner.DefaultInstallTimeout, "how long a provisioning host may take from power-on until its installer wrote and read back the image, before it fails with agent_timeout (env RACKCLOUD_INSTALL_TIMEOUT)")
	fs.DurationVar(&cfg.FirstBootTimeout, "first-boot-timeout", provisioner.DefaultFirstBootTimeout, "how long an installed host may take to boot its disk and call in, before it fails with first_boot_timeout (env RACKCLOUD_FIRST_BOOT_TIMEOUT)")
	fs.DurationVar(&cfg.RoleTimeout, "role-timeout", provisioner.DefaultRoleTimeout, "how long an installed kvm or docker host's daemon may take to answer over mutual TLS once the host called in, before it fails with role_unreachable (env RACKCLOUD_ROLE_TIMEOUT)")
	fs.StringVar(&cfg.HostBootURL, "host-boot-url", "", "the boot service's URL as installed hosts reach it (their heartbeats go there); needed to provision (env RACKCLOUD_HOST_BOOT_URL)")
	fs.StringVar(&cfg.HostNetns, "host-netns", "", "open connections to installed hosts' daemons inside this network namespace (a path such as /run/netns/prov; the lab's provisioning network) (env RACKCLOUD_HOST_NETNS)")
	fs.IntVar(&cfg.HostOverhead.CPUCores, "host-overhead-cpus", 0, "CPU cores an inspected host keeps for itself, never sold (env RACKCLOUD_HOST_OVERHEAD_CPUS)")
	fs.Int64Var(&cfg.HostOverhead.MemoryMiB, "host-overhead-memory-mib", provisioner.DefaultOverheadMemoryMiB, "memory (MiB) an inspected host keeps for itself (env RACKCLOUD_HOST_OVERHEAD_MEMORY_MIB)")
	fs.Int64Var(&cfg.HostOverhead.DiskGiB, "host-overhead-disk-gib", 0, "disk (GiB) an inspected host keeps for itself (env RACKCLOUD_HOST_OVERHEAD_DISK_GIB)")
	fs.DurationVar(&cfg.TaskRetention, "task-retention", tasks.DefaultRetention, "how long ended tasks, their steps and events are kept before they are pruned; negative keeps them forever (env RACKCLOUD_TASK_RETENTION)")
	fs.IntVar(&cfg.Monitor.NodeExporterPort, "node-exporter-port", monitor.DefaultNodeExporterPort, "port of hosts' node exporters, as service discovery gives them to Prometheus (env RACKCLOUD_NODE_EXPORTER_PORT)")
	fs.DurationVar(&cfg.Monitor.StatsInterval, "guest-stats-interval", monitor.DefaultStatsInterval, "how often each host's guest stats are read while Prometheus scrapes this server (env RACKCLOUD_GUEST_STATS_INTERVAL)")
	finishAlerting := bindAlertingFlags(fs, &cfg.Alerting)
	bootServices := fs.String("sd-boot-services", "", "boot services for Prometheus to discover, NAME=HOST:PORT[@REGION/ZONE/RACK], comma-separated (env RACKCLOUD_SD_BOOT_SERVICES)")
	fs.StringVar(&cfg.Rules.Dir, "rules-dir", "", "directory of Prometheus rule files (its rule_files holds DIR/*.yml): one replica at a time writes the shipped and the API's alert rules there and reloads --prometheus-url on change; empty renders nothing (env RACKCLOUD_RULES_DIR)")
	promURLs := fs.String("prometheus-url", "", "base URLs of the Prometheus servers to reload after the rules change (--web.enable-lifecycle), comma-separated (env RACKCLOUD_PROMETHEUS_URL)")
	fs.DurationVar(&cfg.Availability.StaleAfter, "fence-stale-after", availability.DefaultStaleAfter, "how old a host agent's last heartbeat must be before the availability controller may fence the host (env RACKCLOUD_FENCE_STALE_AFTER)")
	if err := parse(fs, args); err != nil {
		return err
	}
	finishAlerting()
	var err error
	if cfg.Monitor.BootServices, err = monitor.ParseBootServices(*bootServices); err != nil {
		return err
	}
	for _, u := range strings.Split(*promURLs, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.Rules.Prometheus = append(cfg.Rules.Prometheus, strings.TrimRight(u, "/"))
		}
	}
	cfg.DatabaseURL = common.databaseURL
	log, err := common.logger()
	if err != nil {
		return err
	}
	s, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

func runMigrate(ctx context.Context, args []string) error {
	fs := newFlagSet("rackcloud migrate", "", "Applies the database migrations and exits.")
	var common commonFlags
	common.bind(fs)
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	pool, err := store.NewPool(ctx, common.databaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := store.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	fmt.Printf("applied %d migrations %v\n", len(applied), applied)
	return nil
}
