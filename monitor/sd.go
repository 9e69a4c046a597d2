package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// DefaultNodeExporterPort is where hosts' node exporters answer.
const DefaultNodeExporterPort = 9100

// Guest labels that make a guest a discovery target: GuestMetricsAddress
// (host:port, taken as is) or GuestMetricsPort (a port on its host's
// address, for a container publishing it); GuestMetricsPath sets the
// scrape path.
const (
	GuestMetricsAddress = "metrics_address"
	GuestMetricsPort    = "metrics_port"
	GuestMetricsPath    = "metrics_path"
)

// BootService is a boot service (package pxe) whose /metrics Prometheus
// scrapes: boot services do not register themselves, so the server is
// told where they are.
type BootService struct {
	Name string
	// Address is host:port of its HTTP server.
	Address            string
	Region, Zone, Rack string
}

// SDConfig configures the service discovery handler.
type SDConfig struct {
	Inventory *Inventory
	Auth      Authenticator
	// NodeExporterPort is where hosts' node exporters answer (0:
	// DefaultNodeExporterPort).
	NodeExporterPort int
	BootServices     []BootService
	// Problem answers errors (nil: plain text).
	Problem ProblemFunc
	Logger  *slog.Logger
	// Timeout bounds the wait for the first inventory load (0: 10 s).
	Timeout time.Duration
}

// SD serves Prometheus HTTP service discovery (http_sd_configs): GET
// /v1/sd/{hosts,bmcs,guests,boot} answers a JSON list of target groups,
// one per target, whose labels are __meta_rackcloud_* (region, zone,
// rack, host, host_id, role, state, ... and label_<key> for each of the
// resource's labels, the key's other characters than [A-Za-z0-9_] made
// _). Query parameters filter: state and role (hosts, bmcs), state, kind
// and project (guests), each a comma-separated list.
//
// Requests carry an API token (Authorization: Bearer, which
// http_sd_configs' authorization sends): admins and operators see
// everything, members and viewers only their projects' guests. Answers
// come from the Inventory's snapshot, never a query per request.
type SD struct {
	cfg SDConfig
}

// NewSD makes the handler.
func NewSD(cfg SDConfig) *SD {
	if cfg.NodeExporterPort == 0 {
		cfg.NodeExporterPort = DefaultNodeExporterPort
	}
	if cfg.Problem == nil {
		cfg.Problem = plainProblem
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	sd := &SD{cfg: cfg}
	if cfg.Inventory != nil {
		cfg.Inventory.OnLoad(func(s *Snapshot) {
			for _, kind := range SDKinds {
				sd.fleetAnswer(s, kind)
			}
		})
	}
	return sd
}

// fleetAnswer is the unfiltered answer for the whole fleet, rendered once
// per snapshot (on load, so that no request waits for it).
func (sd *SD) fleetAnswer(s *Snapshot, kind string) []byte {
	return derive(s, "sd/"+kind, func() []byte { return render(sd.groups(s, kind, filter{}, Caller{Role: rackcloud.RoleAdmin})) })
}

// SDKinds are the kinds of targets SD serves, in path order.
var SDKinds = []string{"hosts", "bmcs", "guests", "boot"}

// TargetGroup is one entry of the HTTP SD answer.
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

func (sd *SD) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	if !slices.Contains(SDKinds, kind) {
		sd.cfg.Problem(w, r, http.StatusNotFound, "no service discovery for "+strconv.Quote(kind)+"; try "+strings.Join(SDKinds, ", "))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		sd.cfg.Problem(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed; allowed: GET, HEAD")
		return
	}
	c, ok := authenticate(w, r, sd.cfg.Auth, sd.cfg.Problem)
	if !ok {
		return
	}
	if kind != "guests" && !c.Fleet() {
		sd.cfg.Problem(w, r, http.StatusForbidden, "role "+string(c.Role)+" may not discover "+kind+" (allowed: admin, operator)")
		return
	}
	if !c.Fleet() && c.Role != rackcloud.RoleMember && c.Role != rackcloud.RoleViewer {
		sd.cfg.Problem(w, r, http.StatusForbidden, "role "+string(c.Role)+" may not discover guests")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), sd.cfg.Timeout)
	defer cancel()
	snap, err := sd.cfg.Inventory.Snapshot(ctx)
	if err != nil {
		sd.cfg.Logger.Warn("monitor: service discovery without an inventory", "err", err)
		sd.cfg.Problem(w, r, http.StatusServiceUnavailable, "the inventory is not loaded yet")
		return
	}
	f := parseFilter(r.URL.Query())
	var body []byte
	if f.empty() && c.Fleet() {
		// The common request: rendered once per snapshot, on load.
		body = sd.fleetAnswer(snap, kind)
	} else {
		body = render(sd.groups(snap, kind, f, c))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

func render(groups []TargetGroup) []byte {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(groups); err != nil {
		// Strings and maps of strings always encode.
		panic(err)
	}
	return buf.Bytes()
}

func (sd *SD) groups(s *Snapshot, kind string, f filter, c Caller) []TargetGroup {
	groups := []TargetGroup{}
	switch kind {
	case "hosts":
		for i := range s.Hosts {
			h := &s.Hosts[i]
			addr := HostAddress(h)
			if !addr.IsValid() || !f.host(h) {
				continue
			}
			groups = append(groups, TargetGroup{Targets: []string{netip.AddrPortFrom(addr, uint16(sd.cfg.NodeExporterPort)).String()},
				Labels: hostLabels(h, map[string]string{"__meta_rackcloud_address": addr.String()})})
		}
	case "bmcs":
		for i := range s.Hosts {
			h := &s.Hosts[i]
			if h.BMCAddress == "" || !f.host(h) {
				continue
			}
			groups = append(groups, TargetGroup{Targets: []string{h.BMCAddress},
				Labels: hostLabels(h, map[string]string{"__meta_rackcloud_bmc_protocol": string(h.BMCProtocol)})})
		}
	case "guests":
		for i := range s.Guests {
			g := &s.Guests[i]
			if !c.Sees(g.ProjectID) || !f.guest(g) {
				continue
			}
			h := s.Host(g.HostID)
			target := guestTarget(g, h)
			if target == "" {
				continue
			}
			groups = append(groups, TargetGroup{Targets: []string{target}, Labels: guestLabels(g, h)})
		}
	case "boot":
		for _, b := range sd.cfg.BootServices {
			groups = append(groups, TargetGroup{Targets: []string{b.Address}, Labels: map[string]string{
				"__meta_rackcloud_boot_service": b.Name, "__meta_rackcloud_region": b.Region,
				"__meta_rackcloud_zone": b.Zone, "__meta_rackcloud_rack": b.Rack}})
		}
	}
	return groups
}

// HostAddress is where h answers: its provisioning IPv4 address, else the
// address in its daemon's endpoint (tcp://ADDR:PORT, qemu+tls://ADDR/...);
// invalid when it has neither (a unix socket endpoint).
func HostAddress(h *store.MonitorHost) netip.Addr {
	if a, err := netip.ParseAddr(h.ProvisioningIPv4); err == nil {
		return a
	}
	if u, err := url.Parse(h.Endpoint); err == nil && u.Hostname() != "" {
		if a, err := netip.ParseAddr(u.Hostname()); err == nil {
			return a
		}
	}
	return netip.Addr{}
}

func guestTarget(g *store.MonitorGuest, h *store.MonitorHost) string {
	if a := g.Labels[GuestMetricsAddress]; a != "" {
		if _, _, err := net.SplitHostPort(a); err == nil {
			return a
		}
		return ""
	}
	port, err := strconv.ParseUint(g.Labels[GuestMetricsPort], 10, 16)
	if err != nil || port == 0 || h == nil {
		return ""
	}
	addr := HostAddress(h)
	if !addr.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(addr, uint16(port)).String()
}

func hostLabels(h *store.MonitorHost, extra map[string]string) map[string]string {
	l := map[string]string{
		"__meta_rackcloud_region": h.Region, "__meta_rackcloud_zone": h.Zone, "__meta_rackcloud_rack": h.Rack,
		"__meta_rackcloud_host": h.Name, "__meta_rackcloud_host_id": h.ID, "__meta_rackcloud_role": string(h.Role),
		"__meta_rackcloud_state": string(h.State), "__meta_rackcloud_power": string(h.Power),
		"__meta_rackcloud_maintenance": strconv.FormatBool(h.Maintenance),
	}
	for k, v := range extra {
		l[k] = v
	}
	addLabels(l, h.Labels)
	return l
}

func guestLabels(g *store.MonitorGuest, h *store.MonitorHost) map[string]string {
	l := map[string]string{
		"__meta_rackcloud_guest": g.Name, "__meta_rackcloud_guest_id": g.ID, "__meta_rackcloud_kind": string(g.Kind),
		"__meta_rackcloud_state": string(g.State), "__meta_rackcloud_project": g.Project,
		"__meta_rackcloud_project_id": g.ProjectID,
	}
	if h != nil {
		l["__meta_rackcloud_region"], l["__meta_rackcloud_zone"], l["__meta_rackcloud_rack"] = h.Region, h.Zone, h.Rack
		l["__meta_rackcloud_host"], l["__meta_rackcloud_host_id"] = h.Name, h.ID
	}
	if p := g.Labels[GuestMetricsPath]; strings.HasPrefix(p, "/") {
		l["__metrics_path__"] = p
	}
	addLabels(l, g.Labels)
	return l
}

// addLabels adds a resource's labels as __meta_rackcloud_label_<key>.
func addLabels(l map[string]string, labels rackcloud.Labels) {
	for k, v := range labels {
		l["__meta_rackcloud_label_"+LabelName(k)] = v
	}
}

// LabelName makes a resource's label key a Prometheus label name: every
// character other than [A-Za-z0-9_] becomes _ (as Prometheus's own
// Kubernetes discovery does).
func LabelName(k string) string {
	b := []byte(k)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// filter is what a request's query asks for; an empty list passes all.
type filter struct {
	state, role, kind, project []string
}

func parseFilter(q url.Values) filter {
	list := func(name string) []string {
		var out []string
		for _, v := range q[name] {
			for p := range strings.SplitSeq(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
		}
		return out
	}
	return filter{state: list("state"), role: list("role"), kind: list("kind"), project: list("project")}
}

func (f filter) empty() bool {
	return len(f.state)+len(f.role)+len(f.kind)+len(f.project) == 0
}

func pass(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }

func (f filter) host(h *store.MonitorHost) bool {
	return pass(f.state, string(h.State)) && pass(f.role, string(h.Role))
}

func (f filter) guest(g *store.MonitorGuest) bool {
	return pass(f.state, string(g.State)) && pass(f.kind, string(g.Kind)) &&
		(len(f.project) == 0 || slices.Contains(f.project, g.Project) || slices.Contains(f.project, g.ProjectID))
}

// ParseBootServices reads a comma-separated list of boot services, each
// NAME=HOST:PORT, optionally followed by @REGION/ZONE/RACK (the
// --sd-boot-services flag): "rack1=10.88.0.1:8080@lab/z1/r1".
func ParseBootServices(s string) ([]BootService, error) {
	var out []BootService
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, rest, ok := strings.Cut(item, "=")
		addr, where, _ := strings.Cut(rest, "@")
		if _, _, err := net.SplitHostPort(addr); !ok || name == "" || err != nil {
			return nil, fmt.Errorf("%w: boot service %q: want NAME=HOST:PORT[@REGION/ZONE/RACK]", rackcloud.ErrInvalid, item)
		}
		b := BootService{Name: name, Address: addr}
		if where != "" {
			parts := strings.Split(where, "/")
			if len(parts) != 3 {
				return nil, fmt.Errorf("%w: boot service %q: the location is REGION/ZONE/RACK", rackcloud.ErrInvalid, item)
			}
			b.Region, b.Zone, b.Rack = parts[0], parts[1], parts[2]
		}
		out = append(out, b)
	}
	return out, nil
}
