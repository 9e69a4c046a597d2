package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rackcloud/rackcloud/lab/bootimg"
	"github.com/rackcloud/rackcloud/pxe"
)

func init() {
	register(command{name: "boot", summary: "run the boot service (DHCP/proxyDHCP, TFTP, HTTP) on a provisioning network", run: runBoot})
}

// bootFlags are the flags of `rackcloud boot`; every one can also be set
// as RACKCLOUD_<FLAG> or in the --config YAML file.
type bootFlags struct {
	iface, netns, serverIP, stateDir          string
	dhcpMode, subnet, rangeStart, rangeEnd    string
	router, dns, reservations                 string
	leaseTime                                 time.Duration
	tftpAddr, tftpRoot                        string
	tftpBlockSize                             int
	httpAddr, filesDir, metricsAddr           string
	biosFile, uefiFile                        string
	autoDiscovery, buildDiscovery             bool
	discoveryKernel, discoveryInitrd, cmdline string
	raInterval                                time.Duration
	apiURL, apiToken, apiCAFile, profilesFile string
	logLevel, logFormat                       string
}

func (f *bootFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.iface, "interface", "", "provisioning network interface (a bridge or NIC) for DHCP and router advertisements")
	fs.StringVar(&f.netns, "netns", "", "open every socket inside this network namespace (/run/netns/NAME); the API is still reached from here")
	fs.StringVar(&f.serverIP, "server-ip", "", "this service's IPv4 address on the provisioning network (required)")
	fs.StringVar(&f.stateDir, "state-dir", "/var/lib/rackcloud/boot", "directory for the lease file, the profile cache and the spool of undelivered boot events")
	fs.StringVar(&f.dhcpMode, "dhcp-mode", string(pxe.DefaultDHCPMode), "full (own the network's addresses), proxy (beside the site's DHCP server) or off")
	fs.StringVar(&f.subnet, "subnet", "", "provisioning subnet in full mode, e.g. 10.88.0.0/24")
	fs.StringVar(&f.rangeStart, "range-start", "", "first address of the dynamic pool (default: the subnet's first)")
	fs.StringVar(&f.rangeEnd, "range-end", "", "last address of the dynamic pool (default: the subnet's last)")
	fs.StringVar(&f.router, "router", "", "default gateway handed out (option 3), if any")
	fs.StringVar(&f.dns, "dns", "", "comma-separated DNS servers handed out (option 6)")
	fs.StringVar(&f.reservations, "reservations", "", "comma-separated MAC=IP address reservations")
	fs.DurationVar(&f.leaseTime, "lease-time", pxe.DefaultLeaseTime, "DHCP lease duration")
	fs.StringVar(&f.tftpAddr, "tftp-addr", "", "TFTP listen address (default SERVER-IP:69)")
	fs.StringVar(&f.tftpRoot, "tftp-root", pxe.DefaultTFTPRoot, "read-only TFTP root holding the iPXE binaries (Debian package ipxe)")
	fs.IntVar(&f.tftpBlockSize, "tftp-blksize", pxe.DefaultTFTPBlockSize, "largest TFTP block size granted")
	fs.StringVar(&f.httpAddr, "http-addr", "", "HTTP listen address (default SERVER-IP:8080)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "a listener for /metrics only, opened outside --netns (e.g. 127.0.0.1:9180), for a Prometheus outside the provisioning network")
	fs.StringVar(&f.filesDir, "files-dir", "/var/lib/rackcloud/boot/files", "kernels, initrds and images served under /files/")
	fs.StringVar(&f.biosFile, "bios-file", pxe.DefaultBIOSBootFile, "iPXE binary for BIOS PXE firmware")
	fs.StringVar(&f.uefiFile, "uefi-file", pxe.DefaultUEFIBootFile, "iPXE binary for UEFI PXE and HTTP boot firmware")
	fs.BoolVar(&f.autoDiscovery, "auto-discovery", true, "boot unknown MACs into the discovery (inspection) image")
	fs.BoolVar(&f.buildDiscovery, "build-discovery-image", false, "fetch the Debian kernel and build the discovery image into FILES-DIR/inspect before starting")
	fs.StringVar(&f.discoveryKernel, "discovery-kernel", "", "discovery kernel, a path under --files-dir or a URL (default inspect/vmlinuz)")
	fs.StringVar(&f.discoveryInitrd, "discovery-initrd", "", "discovery initrd (default inspect/initrd.img)")
	fs.StringVar(&f.cmdline, "discovery-cmdline", pxe.DefaultCmdline, "discovery kernel command line")
	fs.DurationVar(&f.raInterval, "ra-interval", pxe.DefaultRAInterval, "IPv6 router advertisement period on --interface; negative disables them")
	fs.StringVar(&f.apiURL, "api-url", "", "control plane API (GET /v1/boot/profiles/{mac}, POST /v1/boot/events); empty runs standalone")
	fs.StringVar(&f.apiToken, "api-token", "", "bearer token for the API (prefer env RACKCLOUD_API_TOKEN)")
	fs.StringVar(&f.apiCAFile, "api-ca-file", "", "PEM file of CAs trusted for the API's TLS certificate, besides the system's")
	fs.StringVar(&f.profilesFile, "profiles", "", "standalone: JSON file with an array of boot profiles (the API's wire format)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.String("config", "", "optional YAML file whose keys are these flag names (env RACKCLOUD_CONFIG)")
}

// config turns the flags into a pxe.Config, reporting every bad value.
func (f *bootFlags) config() (pxe.Config, error) {
	var errs []error
	addr := func(name, v string) netip.Addr {
		if v == "" {
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", name, v, err))
		}
		return a
	}
	addrPort := func(name, v string) netip.AddrPort {
		if v == "" {
			return netip.AddrPort{}
		}
		a, err := netip.ParseAddrPort(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", name, v, err))
		}
		return a
	}
	cfg := pxe.Config{
		Interface: f.iface, Netns: f.netns, ServerIP: addr("server-ip", f.serverIP), StateDir: f.stateDir,
		DHCPMode:   pxe.DHCPMode(f.dhcpMode),
		RangeStart: addr("range-start", f.rangeStart), RangeEnd: addr("range-end", f.rangeEnd),
		Router: addr("router", f.router), LeaseTime: f.leaseTime,
		TFTPAddr: addrPort("tftp-addr", f.tftpAddr), TFTPRoot: f.tftpRoot, TFTPBlockSize: f.tftpBlockSize,
		HTTPAddr: addrPort("http-addr", f.httpAddr), FilesDir: f.filesDir, MetricsAddr: addrPort("metrics-addr", f.metricsAddr),
		BIOSBootFile: f.biosFile, UEFIBootFile: f.uefiFile, AutoDiscovery: f.autoDiscovery,
		RAInterval: f.raInterval,
	}
	cfg.Discovery.Kernel, cfg.Discovery.Initrd, cfg.Discovery.Cmdline = f.discoveryKernel, f.discoveryInitrd, f.cmdline
	if f.subnet != "" {
		p, err := netip.ParsePrefix(f.subnet)
		if err != nil {
			errs = append(errs, fmt.Errorf("--subnet %q: %w", f.subnet, err))
		}
		cfg.Subnet = p
	}
	for _, d := range splitList(f.dns) {
		cfg.DNS = append(cfg.DNS, addr("dns", d))
	}
	for _, r := range splitList(f.reservations) {
		mac, ip, ok := strings.Cut(r, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("--reservations %q: want MAC=IP", r))
			continue
		}
		if cfg.Reservations == nil {
			cfg.Reservations = map[string]netip.Addr{}
		}
		cfg.Reservations[strings.ToLower(strings.ReplaceAll(mac, "-", ":"))] = addr("reservations", ip)
	}
	return cfg, errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func bootLogger(level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// loadProfiles reads a standalone profiles file.
func loadProfiles(name string) (*pxe.StaticProfiles, error) {
	sp := &pxe.StaticProfiles{}
	if name == "" {
		return sp, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("--profiles: %w", err)
	}
	var list []pxe.Profile
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("--profiles %s: %w", name, err)
	}
	for _, p := range list {
		if err := sp.Set(p); err != nil {
			return nil, fmt.Errorf("--profiles %s: %w", name, err)
		}
	}
	return sp, nil
}

func runBoot(ctx context.Context, args []string) error {
	fs := newFlagSet("rackcloud boot", "", "Runs the boot service (DHCP/proxyDHCP, TFTP, HTTP iPXE) of one provisioning segment.")
	var f bootFlags
	f.bind(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := bootLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if f.buildDiscovery {
		dir := filepath.Join(f.filesDir, pxe.DefaultDiscoveryImage)
		log.Info("building the discovery image", "dir", dir, "cache", bootimg.CacheDir())
		if _, err := bootimg.Inspection(ctx, dir); err != nil {
			return fmt.Errorf("discovery image: %w", err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	deps := pxe.Deps{Logger: log, Registerer: reg, Gatherer: reg}
	if f.apiURL != "" {
		client, err := pxe.NewAPIClient(pxe.APIConfig{BaseURL: f.apiURL, Token: f.apiToken, CAFile: f.apiCAFile,
			CacheFile: filepath.Join(f.stateDir, "profiles.json"), Registerer: reg}, log)
		if err != nil {
			return err
		}
		deps.Profiles, deps.Events = client, client
	} else {
		sp, err := loadProfiles(f.profilesFile)
		if err != nil {
			return err
		}
		deps.Profiles = sp
	}
	svc, err := pxe.New(cfg, deps)
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-svc.Err():
	}
	if err := svc.Stop(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}
