// Package monlab runs the monitoring parts of the lab from Debian's
// packages: Prometheus (scraping rackcloud and, through rackcloud's HTTP
// service discovery (Config.SD), the fleet), Alertmanager and the node
// exporter, each on a loopback port under a state directory, stopped by PID.
package monlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/lab/proc"
)

// Config says where things live and what Prometheus scrapes.
type Config struct {
	// Dir is the state directory (TSDB, Alertmanager data, configs, logs).
	Dir string
	// Ports on 127.0.0.1; 0 picks free ones.
	PrometheusPort, AlertmanagerPort, NodeExporterPort int
	// RackcloudTargets are host:port addresses of rackcloud servers whose
	// /metrics Prometheus scrapes (job "rackcloud").
	RackcloudTargets []string
	// ScrapeInterval for every job; default 5s.
	ScrapeInterval time.Duration
	// WebhookURL, when set, is rackcloud's availability webhook: the
	// Alertmanager runs rackcloud's own configuration (alerts.RenderAM),
	// which sends host-availability alerts there with WebhookToken as the
	// bearer token (a random one, in Stack.WebhookToken, when empty).
	WebhookURL, WebhookToken string
	// RuleFiles are globs of Prometheus rule files.
	RuleFiles []string
	// NoNodeExporter skips the node exporter.
	NoNodeExporter bool
	// SD, when its URL is set, makes Prometheus discover the fleet through
	// rackcloud's HTTP service discovery (SDJobs).
	SD SDConfig
}

// SDConfig points Prometheus at a rackcloud server's service discovery.
type SDConfig struct {
	// URL is the server's base URL ("http://127.0.0.1:8080").
	URL string
	// TokenFile holds an API token that may discover the whole fleet
	// (role operator or admin; monitor.Caller.Fleet).
	TokenFile string
	// RefreshInterval is how often Prometheus asks (0: DefaultSDRefresh).
	RefreshInterval time.Duration
	// BMCExporter is host:port of an exporter that reads BMCs the
	// multi-target way (/metrics?target=BMC&module=PROTOCOL, as
	// ipmi_exporter does). Without one the BMCs are discovered but not
	// scraped (dropped targets): rackcloud's own /metrics carries what its
	// BMC poll reads.
	BMCExporter string
}

// DefaultSDRefresh is the lab's service discovery refresh: short, so that
// a host enrolled a moment ago is scraped within seconds.
const DefaultSDRefresh = 2 * time.Second

// Stack is the running monitoring parts.
type Stack struct {
	Config
	PrometheusURL, AlertmanagerURL, NodeExporterURL string
	procs                                           []*proc.Process
}

// Start starts Alertmanager, the node exporter and Prometheus, and waits
// until each answers its readiness endpoint.
func Start(ctx context.Context, c Config) (*Stack, error) {
	for _, bin := range []string{"prometheus", "prometheus-alertmanager"} {
		if _, err := exec(bin); err != nil {
			return nil, err
		}
	}
	if c.ScrapeInterval == 0 {
		c.ScrapeInterval = 5 * time.Second
	}
	for _, p := range []*int{&c.PrometheusPort, &c.AlertmanagerPort, &c.NodeExporterPort} {
		if *p == 0 {
			port, err := proc.FreePort()
			if err != nil {
				return nil, err
			}
			*p = port
		}
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	s := &Stack{Config: c,
		PrometheusURL:   "http://127.0.0.1:" + strconv.Itoa(c.PrometheusPort),
		AlertmanagerURL: "http://127.0.0.1:" + strconv.Itoa(c.AlertmanagerPort),
		NodeExporterURL: "http://127.0.0.1:" + strconv.Itoa(c.NodeExporterPort),
	}
	if err := s.start(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func exec(bin string) (string, error) {
	for _, d := range []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"} {
		p := filepath.Join(d, bin)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not installed: run lab/install.sh", bin)
}

func (s *Stack) start(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	amDir := filepath.Join(s.Dir, "alertmanager")
	if err := os.MkdirAll(amDir, 0o755); err != nil {
		return err
	}
	amConf := filepath.Join(s.Dir, "alertmanager.yml")
	if s.WebhookURL != "" && s.WebhookToken == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		s.WebhookToken = hex.EncodeToString(b[:])
	}
	tokenFile := filepath.Join(s.Dir, "webhook.token")
	if err := os.WriteFile(tokenFile, []byte(s.WebhookToken), 0o600); err != nil {
		return err
	}
	yml, err := AlertmanagerConfig(s.Config, tokenFile)
	if err != nil {
		return err
	}
	if err := os.WriteFile(amConf, yml, 0o600); err != nil {
		return err
	}
	am, _ := exec("prometheus-alertmanager")
	p, err := proc.Start(proc.Spec{Name: "alertmanager", Path: am, Log: filepath.Join(s.Dir, "alertmanager.log"),
		Args: []string{"--config.file=" + amConf, "--storage.path=" + amDir,
			"--web.listen-address=127.0.0.1:" + strconv.Itoa(s.AlertmanagerPort), "--cluster.listen-address="}})
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	if err := p.WaitFunc(wctx, httpOK(s.AlertmanagerURL+"/-/ready")); err != nil {
		return err
	}

	var scrapeNode string
	if !s.NoNodeExporter {
		ne, err := exec("prometheus-node-exporter")
		if err != nil {
			return err
		}
		p, err := proc.Start(proc.Spec{Name: "node-exporter", Path: ne, Log: filepath.Join(s.Dir, "node-exporter.log"),
			Args: []string{"--web.listen-address=127.0.0.1:" + strconv.Itoa(s.NodeExporterPort), "--no-collector.systemd"}})
		if err != nil {
			return err
		}
		s.procs = append(s.procs, p)
		if err := p.WaitFunc(wctx, httpOK(s.NodeExporterURL+"/metrics")); err != nil {
			return err
		}
		scrapeNode = "127.0.0.1:" + strconv.Itoa(s.NodeExporterPort)
	}

	promConf := filepath.Join(s.Dir, "prometheus.yml")
	if err := os.WriteFile(promConf, []byte(PrometheusConfig(s.Config, scrapeNode)), 0o644); err != nil {
		return err
	}
	prom, _ := exec("prometheus")
	p, err = proc.Start(proc.Spec{Name: "prometheus", Path: prom, Log: filepath.Join(s.Dir, "prometheus.log"),
		Args: []string{"--config.file=" + promConf, "--storage.tsdb.path=" + filepath.Join(s.Dir, "tsdb"),
			"--web.listen-address=127.0.0.1:" + strconv.Itoa(s.PrometheusPort), "--web.enable-lifecycle",
			// Prometheus 2.42 forgets its Alertmanagers on every reload until
			// the next 5 s discovery tick (prometheus#13064, fixed in 3.0) and
			// drops alerts sent meanwhile; they go out again only after the
			// resend delay (1m by default). The lab resends often.
			"--rules.alert.resend-delay=" + ResendDelay.String()}})
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	return p.WaitFunc(wctx, httpOK(s.PrometheusURL+"/-/ready"))
}

// ResendDelay is how often the lab's Prometheus resends firing alerts to
// Alertmanager (--rules.alert.resend-delay).
const ResendDelay = 2 * time.Second

// PrometheusConfig renders prometheus.yml for c.
func PrometheusConfig(c Config, nodeExporter string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", c.ScrapeInterval, c.ScrapeInterval)
	fmt.Fprintf(&b, "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:%d']\n", c.AlertmanagerPort)
	if len(c.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range c.RuleFiles {
			fmt.Fprintf(&b, "  - %q\n", f)
		}
	}
	b.WriteString("scrape_configs:\n")
	fmt.Fprintf(&b, "  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n", c.PrometheusPort)
	if len(c.RackcloudTargets) > 0 {
		b.WriteString("  - job_name: rackcloud\n    static_configs:\n      - targets: [")
		for i, t := range c.RackcloudTargets {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", t)
		}
		b.WriteString("]\n")
	}
	if nodeExporter != "" {
		fmt.Fprintf(&b, "  - job_name: node\n    static_configs:\n      - targets: [%q]\n", nodeExporter)
	}
	if c.SD.URL != "" {
		b.WriteString(SDJobs(c.SD))
	}
	return b.String()
}

// SDKinds are the kinds rackcloud's service discovery serves
// (monitor.SDKinds; monlab does not import the server's packages).
var SDKinds = []string{"hosts", "bmcs", "guests", "boot"}

// SDJobs renders one scrape job per kind of target, rackcloud-<kind>,
// each reading GET <URL>/v1/sd/<kind> with the bearer token in TokenFile
// and mapping every __meta_rackcloud_<name> label to <name> (host, host_id,
// region, zone, rack, role, state, project, label_<key>, ...): hosts'
// node exporters, guests that publish metrics, boot services' /metrics,
// and BMCs through c.BMCExporter.
func SDJobs(c SDConfig) string {
	refresh := c.RefreshInterval
	if refresh == 0 {
		refresh = DefaultSDRefresh
	}
	var b strings.Builder
	for _, kind := range SDKinds {
		fmt.Fprintf(&b, `  - job_name: rackcloud-%s
    http_sd_configs:
      - url: %q
        refresh_interval: %s
        authorization:
          type: Bearer
          credentials_file: %q
    relabel_configs:
      - action: labelmap
        regex: __meta_rackcloud_(.+)
`, kind, strings.TrimSuffix(c.URL, "/")+"/v1/sd/"+kind, refresh, c.TokenFile)
		if kind != "bmcs" {
			continue
		}
		if c.BMCExporter == "" {
			b.WriteString("      # No BMC exporter: discovered, not scraped.\n      - action: drop\n        source_labels: [__address__]\n        regex: .+\n")
			continue
		}
		fmt.Fprintf(&b, `      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__meta_rackcloud_bmc_protocol]
        target_label: __param_module
      - source_labels: [__address__]
        target_label: bmc
      - target_label: __address__
        replacement: %q
`, c.BMCExporter)
	}
	return b.String()
}

// AlertmanagerConfig renders alertmanager.yml with rackcloud's renderer,
// with the lab's short timings: host-availability alerts go to
// c.WebhookURL (when set) with the bearer token in tokenFile, every alert
// to the operators' default receiver, which has no integrations.
func AlertmanagerConfig(c Config, tokenFile string) ([]byte, error) {
	ac := alerts.AMConfig{GroupWait: time.Second, GroupInterval: 5 * time.Second, RepeatInterval: time.Hour,
		RemediationGroupWait: time.Second, RemediationInterval: 5 * time.Second}
	if c.WebhookURL != "" {
		ac.RemediationURL, ac.RemediationTokenFile = c.WebhookURL, tokenFile
	}
	return alerts.RenderAM(ac)
}

func httpOK(url string) func() bool {
	c := &http.Client{Timeout: time.Second}
	return func() bool {
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// Stop stops every process by PID, Prometheus first. Safe to call twice.
func (s *Stack) Stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop(syscall.SIGTERM, 10*time.Second)
	}
}
