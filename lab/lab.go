// Package lab brings the whole system up on one machine for operators and
// demos (`make run`): a PostgreSQL cluster, Prometheus, Alertmanager and the
// node exporter from Debian's packages, and the rackcloud server itself, each
// on loopback under one state directory, all stopped by PID on the way out.
// Its subpackages are the harness the tests use: netns, qemu, postgres,
// pgtest, monlab, proc.
package lab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/bootimg"
	"github.com/rackcloud/rackcloud/lab/monlab"
	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/postgres"
	"github.com/rackcloud/rackcloud/lab/qemu"
	"github.com/rackcloud/rackcloud/lab/rack"
	"github.com/rackcloud/rackcloud/monitor"
	"github.com/rackcloud/rackcloud/pxe"
	"github.com/rackcloud/rackcloud/server"
)

// Default ports of `rackcloud lab`.
const (
	DefaultAPIPort          = 8080
	DefaultPostgresPort     = 15432
	DefaultPrometheusPort   = 19090
	DefaultAlertmanagerPort = 19093
	DefaultNodeExporterPort = 19100
	// DefaultBootMetricsPort is where the boot service's /metrics answers
	// on the host's loopback (its DHCP, TFTP and HTTP serve inside the
	// provisioning namespace, out of Prometheus's reach).
	DefaultBootMetricsPort = 19180
	// LabInventoryMaxAge is how old the monitor's inventory gets in the
	// lab: discovery and host metrics follow the rack within seconds.
	LabInventoryMaxAge = 5 * time.Second
	// Node i's BMCs listen on DefaultIPMIPort+i-1 (UDP) and
	// DefaultRedfishPort+i-1 (HTTPS), so that scripts and the BMC
	// addresses recorded in the control plane stay valid across restarts.
	DefaultIPMIPort    = 16201
	DefaultRedfishPort = 16301
	// DefaultNetns is the provisioning network's namespace and
	// DefaultGateway the bridge address in it.
	DefaultNetns   = "rackcloud-lab"
	DefaultGateway = "10.77.0.1/24"
	DefaultNodes   = 4
	// LabBMCPollInterval is how often the lab's server polls each BMC.
	LabBMCPollInterval = 5 * time.Second
)

// Config is the lab's configuration.
type Config struct {
	// Dir is the state directory; the database survives restarts there.
	Dir                                                                       string
	APIPort, PostgresPort, PrometheusPort, AlertmanagerPort, NodeExporterPort int
	// BootMetricsPort is the boot service's metrics port on 127.0.0.1 (0:
	// DefaultBootMetricsPort).
	BootMetricsPort int
	// Netns and Gateway name the provisioning network; a namespace of that
	// name left by an earlier run that crashed is deleted and made anew.
	Netns   string
	Gateway netip.Prefix
	// Nodes is the number of simulated servers (QEMU + ipmi_sim and
	// Redfish BMCs), powered off and waiting to be onboarded; 0 for none.
	// The rack keeps its identity (MACs, serials, BMC password) in Dir.
	Nodes int
	// IPMIPort and RedfishPort are node 1's BMC ports (node i: +i-1); 0
	// picks free ports.
	IPMIPort, RedfishPort int
	// CLI is how the banner names the rackcloud binary ("./bin/rackcloud"
	// under make run); empty means "rackcloud".
	CLI string
	// Onboard powers every server of the rack on into PXE through its IPMI
	// BMC once the boot service runs, as an operator racking them would:
	// each is discovered, inspected by its agent and becomes available
	// with no command typed.
	Onboard bool
	// Roles, when set, are the roles the rack's servers are installed
	// with, in turn (make run: kvm, docker, bm): the lab builds those host
	// images (cached), serves them, and writes an enroll rule per server
	// that provisions it once inspected. The servers are sized for their
	// roles (LabSizes).
	Roles []rackcloud.HostRole
}

// RoleSizes are the servers' hardware by role when Config.Roles is set:
// a KVM or Docker host under emulation wants 2 GiB and a few GiB of disk
// (../shared/LAB.md, "Real host images"), bare metal the least.
var RoleSizes = map[rackcloud.HostRole]rack.Size{
	rackcloud.RoleKVM:       {CPUs: 2, MemoryMiB: 2048, DisksMiB: []int{6144}},
	rackcloud.RoleDocker:    {CPUs: 2, MemoryMiB: 1536, DisksMiB: []int{4096, 1024}},
	rackcloud.RoleBareMetal: {CPUs: 1, MemoryMiB: 512, DisksMiB: []int{2048}},
}

// Lab is a running lab.
type Lab struct {
	Config
	Postgres *postgres.Cluster
	Monitor  *monlab.Stack
	Server   *server.Server
	Net      *netns.Net
	Rack     *rack.Rack
	Boot     *pxe.Service
	// BootRegistry holds the boot service's own metrics (rackcloud_boot_*),
	// served on its metrics listener and scraped through /v1/sd/boot.
	BootRegistry *prometheus.Registry
	APIURL       string
	stops        []func()
	// onboarded says the rack was powered on at start (Config.Onboard).
	onboarded bool
	// OnboardedAt is when the first server was powered on (Config.Onboard).
	OnboardedAt time.Time
}

// Up starts everything and returns when all of it is ready.
func Up(ctx context.Context, c Config, log *slog.Logger) (l *Lab, err error) {
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, err
	}
	c.Dir = dir
	c.BootMetricsPort = cmp.Or(c.BootMetricsPort, DefaultBootMetricsPort)
	for _, p := range []int{c.APIPort, c.PostgresPort, c.PrometheusPort, c.AlertmanagerPort, c.NodeExporterPort, c.BootMetricsPort} {
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

	// The rack comes before the server, whose BMC polling must trust the
	// rack's Redfish CA (made anew at each start).
	caFile, bootURL, hostNetns := "", "", ""
	var bootServices []monitor.BootService
	if c.Nodes > 0 {
		if err := l.startRack(ctx, log); err != nil {
			return l, err
		}
		caFile, bootURL, hostNetns = l.Rack.CAFile(), l.BootURL(), l.Net.Path()
		bootServices = []monitor.BootService{{Name: rackName, Address: l.BootMetricsAddr().String()}}
	}

	log.Info("lab: starting the rackcloud server", "port", c.APIPort)
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	l.Server, err = server.New(srvCtx, server.Config{Listen: "127.0.0.1:" + strconv.Itoa(c.APIPort),
		DatabaseURL: l.Postgres.URL("rackcloud"), BootstrapTokenFile: l.TokenFile(),
		SecretKeyFile: filepath.Join(dir, "secret.key"),
		// The lab's BMCs are local simulators: poll them often, so that
		// power changes show in the API within seconds.
		BMCPollInterval: LabBMCPollInterval, BMCCAFile: caFile,
		// Installed hosts call in to the boot service; their daemons
		// answer inside the provisioning network's namespace.
		HostBootURL: bootURL, HostNetns: hostNetns,
		// Prometheus discovers the rack and the boot service through SD.
		Monitor: monitor.Config{MaxAge: LabInventoryMaxAge, BootServices: bootServices},
		// The shipped and the API's alert rules, for the lab's Prometheus.
		Rules: alerts.RendererConfig{Dir: l.RulesDir(), Prometheus: []string{"http://127.0.0.1:" + strconv.Itoa(c.PrometheusPort)}},
		// The lab's Alertmanager (which runs the configuration monlab
		// renders): alerts list, maintenance silences.
		Alerting: server.AlertingConfig{AlertmanagerURLs: []string{"http://127.0.0.1:" + strconv.Itoa(c.AlertmanagerPort)}}}, log)
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

	// Prometheus's SD token is minted with the admin token the server
	// writes once ready.
	if err := l.waitReady(ctx); err != nil {
		return l, err
	}
	if _, err := l.roleToken(ctx, l.PrometheusTokenFile(), rackcloud.RoleOperator, "lab-prometheus"); err != nil {
		return l, err
	}
	// Alertmanager calls the availability webhook with an operator token
	// of its own.
	amToken, err := l.roleToken(ctx, filepath.Join(l.Dir, "alertmanager-token"), rackcloud.RoleOperator, "lab-alertmanager")
	if err != nil {
		return l, err
	}
	log.Info("lab: starting Prometheus, Alertmanager and the node exporter")
	l.Monitor, err = monlab.Start(ctx, monlab.Config{Dir: filepath.Join(dir, "monitoring"),
		PrometheusPort: c.PrometheusPort, AlertmanagerPort: c.AlertmanagerPort, NodeExporterPort: c.NodeExporterPort,
		RackcloudTargets: []string{"127.0.0.1:" + strconv.Itoa(c.APIPort)}, RuleFiles: []string{l.RulesDir() + "/*.yml"},
		WebhookURL: l.APIURL + "/v1/availability/webhook", WebhookToken: amToken,
		SD: monlab.SDConfig{URL: l.APIURL, TokenFile: l.PrometheusTokenFile()}})
	if err != nil {
		return l, err
	}
	l.stops = append(l.stops, l.Monitor.Stop)

	if c.Nodes > 0 {
		if err := l.waitReady(ctx); err != nil {
			return l, err
		}
		if err := l.startBoot(ctx, log); err != nil {
			return l, err
		}
		if len(c.Roles) > 0 {
			if err := l.installRules(ctx, log); err != nil {
				return l, err
			}
		}
		if c.Onboard {
			if err := l.onboard(ctx, log); err != nil {
				return l, err
			}
		}
	}
	return l, l.waitReady(ctx)
}

// onboard sets every node's next boot to PXE and powers it on through its
// IPMI BMC (ipmi_sim, over the network, with bmclib as rackcloud does).
func (l *Lab) onboard(ctx context.Context, log *slog.Logger) error {
	m, err := bmc.New(bmc.Config{Logger: log.With("component", "lab-bmc")})
	if err != nil {
		return err
	}
	defer m.Close(context.WithoutCancel(ctx))
	l.OnboardedAt = time.Now()
	for _, n := range l.Rack.Nodes {
		c, err := m.Open(ctx, bmc.Endpoint{Protocol: rackcloud.BMCIPMI, Address: n.IPMI.String(), Username: n.User,
			Password: bmc.NewSecret(n.Password)})
		if err == nil {
			err = c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{})
		}
		if err == nil {
			err = c.SetPower(ctx, bmc.PowerOn)
		}
		if err != nil {
			return fmt.Errorf("onboard %s: %w", n.Name, err)
		}
		log.Info("lab: powered on into PXE through its BMC", "node", n.Name, "mac", n.MAC.String(), "firmware", n.Firmware)
	}
	l.onboarded = true
	return nil
}

// startRack creates the provisioning network and the simulated rack on it.
func (l *Lab) startRack(ctx context.Context, log *slog.Logger) error {
	if l.Netns == "" {
		l.Netns = DefaultNetns
	}
	if !l.Gateway.IsValid() {
		l.Gateway = netip.MustParsePrefix(DefaultGateway)
	}
	if _, err := os.Stat(netns.Path(l.Netns)); err == nil {
		log.Warn("lab: deleting a provisioning namespace left by an earlier run", "netns", l.Netns)
		if err := (&netns.Net{Name: l.Netns}).Close(); err != nil {
			return err
		}
	}
	log.Info("lab: creating the provisioning network", "netns", l.Netns, "gateway", l.Gateway)
	n, err := netns.New(ctx, l.Netns, l.Gateway)
	if err != nil {
		return err
	}
	l.Net = n
	l.stops = append(l.stops, func() {
		if err := n.Close(); err != nil {
			log.Error("lab: delete namespace", "err", err)
		}
	})
	log.Info("lab: starting the simulated rack", "servers", l.Nodes)
	var sizes []rack.Size
	for _, role := range l.Roles {
		sizes = append(sizes, RoleSizes[role])
	}
	r, err := rack.Start(ctx, rack.Config{Name: rackName, Nodes: l.Nodes, Dir: filepath.Join(l.Dir, "rack"), Sizes: sizes,
		Net: n, Redfish: true, Firmware: []qemu.Firmware{qemu.BIOS, qemu.UEFI}, Logger: log,
		IPMIPort: l.IPMIPort, RedfishPort: l.RedfishPort})
	if err != nil {
		return err
	}
	l.Rack = r
	l.stops = append(l.stops, func() {
		if err := r.Stop(); err != nil {
			log.Error("lab: stop rack", "err", err)
		}
	})
	return nil
}

// startBoot builds the inspection image (a real Debian kernel, fetched once
// into a cache) and runs the boot service on the provisioning network,
// talking to the lab's API with a boot token (BootToken).
func (l *Lab) startBoot(ctx context.Context, log *slog.Logger) error {
	files := filepath.Join(l.Dir, "boot", "files")
	log.Info("lab: preparing the inspection image (the first run downloads a Debian kernel)", "cache", bootimg.CacheDir())
	if _, err := bootimg.Inspection(ctx, filepath.Join(files, pxe.DefaultDiscoveryImage)); err != nil {
		return fmt.Errorf("inspection image: %w", err)
	}
	token, err := l.BootToken(ctx)
	if err != nil {
		return err
	}
	// The boot service's own registry, as `rackcloud boot` has: its
	// metrics are scraped from its metrics listener, not the server's.
	l.BootRegistry = prometheus.NewRegistry()
	client, err := pxe.NewAPIClient(pxe.APIConfig{BaseURL: l.APIURL, Token: token,
		CacheFile: filepath.Join(l.Dir, "boot", "profiles.json"), Registerer: l.BootRegistry}, log.With("component", "pxe-api"))
	if err != nil {
		return err
	}
	gw := l.Gateway.Addr()
	b := gw.As4()
	b[3] = 100
	first := netip.AddrFrom4(b)
	b[3] = 199
	last := netip.AddrFrom4(b)
	svc, err := pxe.New(pxe.Config{Interface: l.Net.Bridge, Netns: l.Net.Path(), ServerIP: gw,
		DHCPMode: pxe.DHCPFull, Subnet: l.Gateway.Masked(), RangeStart: first, RangeEnd: last, StateDir: filepath.Join(l.Dir, "boot"),
		FilesDir: files, AutoDiscovery: true, MetricsAddr: l.BootMetricsAddr()},
		pxe.Deps{Profiles: client, Events: client, Logger: log.With("component", "pxe"), Registerer: l.BootRegistry})
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	l.Boot = svc
	l.stops = append(l.stops, func() {
		if err := svc.Stop(); err != nil {
			log.Error("lab: stop boot service", "err", err)
		}
	})
	return nil
}

func (l *Lab) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		resp, err := httpGet(ctx, l.APIURL+"/readyz")
		if err == nil && resp == 200 {
			if _, err := os.Stat(l.TokenFile()); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rackcloud server not ready: %w", context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TokenFile holds the lab's admin token, written by the server at its first
// start.
func (l *Lab) TokenFile() string { return filepath.Join(l.Dir, "admin-token") }

// Token returns the lab's admin token.
func (l *Lab) Token() (string, error) {
	b, err := os.ReadFile(l.TokenFile())
	return strings.TrimSpace(string(b)), err
}

// BootTokenFile holds the boot service's token (role boot: boot
// profiles and boot events only).
func (l *Lab) BootTokenFile() string { return filepath.Join(l.Dir, "boot-token") }

// BootToken returns the boot service's token: the one in BootTokenFile
// while the API still accepts it, else a new one minted with the admin
// token (and saved, mode 0600).
func (l *Lab) BootToken(ctx context.Context) (string, error) {
	return l.roleToken(ctx, l.BootTokenFile(), rackcloud.RoleBoot, "lab-boot")
}

// rackName names the lab's rack (and its boot service in SD).
const rackName = "rack1"

// BootMetricsAddr is where the boot service's /metrics answers on the
// host's loopback.
func (l *Lab) BootMetricsAddr() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(l.BootMetricsPort))
}

// RulesDir is where the server writes the alert rules the lab's
// Prometheus loads.
func (l *Lab) RulesDir() string { return filepath.Join(l.Dir, "monitoring", "rules") }

// PrometheusTokenFile holds the token Prometheus discovers the fleet
// with (role operator: the least that sees every host, BMC and boot
// service; monitor.Caller.Fleet).
func (l *Lab) PrometheusTokenFile() string { return filepath.Join(l.Dir, "prometheus-token") }

// roleToken returns the token of role saved in file while the API still
// accepts it, else a new one (named prefix-<unix time>) minted with the
// admin token and saved, mode 0600.
func (l *Lab) roleToken(ctx context.Context, file string, role rackcloud.Role, prefix string) (string, error) {
	if b, err := os.ReadFile(file); err == nil {
		tok := strings.TrimSpace(string(b))
		if ok, err := l.tokenWorks(ctx, role, tok); err == nil && ok {
			return tok, nil
		}
	}
	admin, err := l.Token()
	if err != nil {
		return "", err
	}
	name := prefix + "-" + strconv.FormatInt(time.Now().Unix(), 10)
	var out struct {
		Secret string `json:"secret"`
	}
	if err := httpPostJSON(ctx, l.APIURL+"/v1/tokens", admin, map[string]any{"name": name, "role": string(role)}, &out); err != nil {
		return "", fmt.Errorf("%s token: %w", role, err)
	}
	if err := os.WriteFile(file, []byte(out.Secret+"\n"), 0o600); err != nil {
		return "", err
	}
	return out.Secret, nil
}

// tokenWorks asks the API whether tok still works for what role does.
func (l *Lab) tokenWorks(ctx context.Context, role rackcloud.Role, tok string) (bool, error) {
	if role == rackcloud.RoleBoot {
		// Any MAC will do: 404 (no such host) means the token is good.
		code, err := httpGetAuth(ctx, l.APIURL+pxe.ProfilesPath+"00:00:00:00:00:00", tok)
		return code == 404 || code == 200, err
	}
	code, err := httpGetAuth(ctx, l.APIURL+monitor.SDPath+"boot", tok)
	return code == 200, err
}

// Print writes where everything is.
func (l *Lab) Print(w io.Writer) {
	fmt.Fprintf(w, `
rackcloud lab is up (state in %s)

  API            %s/v1/regions
  admin token    %s  (export RACKCLOUD_SERVER=%s RACKCLOUD_TOKEN=$(cat %s); %s host list)
  OpenAPI        %s/openapi.json   (docs: %s/docs)
  health         %s/healthz  %s/readyz
  metrics        %s/metrics
  PostgreSQL     %s
  Prometheus     %s   (targets: %s/targets)
  Alertmanager   %s
  node exporter  %s/metrics

`, l.Dir, l.APIURL, l.TokenFile(), l.APIURL, l.TokenFile(), l.cli(), l.APIURL, l.APIURL, l.APIURL, l.APIURL, l.APIURL, l.Postgres.URL("rackcloud"),
		l.Monitor.PrometheusURL, l.Monitor.PrometheusURL, l.Monitor.AlertmanagerURL, l.Monitor.NodeExporterURL)
	if l.Boot != nil {
		fmt.Fprintf(w, "  boot service   DHCP/TFTP/HTTP on %s in namespace %s (http://%s), token %s (role boot)\n", l.Net.Bridge, l.Net.Name, l.Boot.HTTPAddr(), l.BootTokenFile())
		fmt.Fprintf(w, "  boot metrics   http://%s/metrics (Prometheus finds it through %s%sboot, token %s)\n", l.Boot.MetricsAddr(), l.APIURL, monitor.SDPath, l.PrometheusTokenFile())
	}
	if l.Rack != nil {
		fmt.Fprintln(w)
		l.Rack.Print(w)
		if l.onboarded {
			fmt.Fprintf(w, "\nThe servers were powered on into PXE through their BMCs: each is discovered, inspected by\n"+
				"its agent and becomes available (a BIOS node in about a minute, a UEFI node in two). Watch:\n"+
				"  %s host list\n", l.cli())
		}
		fmt.Fprintf(w, "\nPower a server on into PXE through its BMC yourself; it is discovered, inspected and made available:\n"+
			"  ipmitool -I lanplus -C 3 -H 127.0.0.1 -p %d -U %s -P %s chassis bootdev pxe\n"+
			"  ipmitool -I lanplus -C 3 -H 127.0.0.1 -p %d -U %s -P %s chassis power on\n"+
			"  %s host list\n",
			l.Rack.Nodes[0].IPMI.Port(), l.Rack.User(), l.Rack.Password(),
			l.Rack.Nodes[0].IPMI.Port(), l.Rack.User(), l.Rack.Password(), l.cli())
	}
	fmt.Fprintln(w, "\nCtrl-C stops everything.")
}

func (l *Lab) cli() string { return cmp.Or(l.CLI, "rackcloud") }

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
