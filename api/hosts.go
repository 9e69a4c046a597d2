package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/vmctl"
)

// Task kinds the host operations submit (rackcloud.KindHost*); the
// provisioner registers their steps with the task engine.
const (
	KindHostEnroll      = rackcloud.KindHostEnroll
	KindHostProvision   = rackcloud.KindHostProvision
	KindHostDeprovision = rackcloud.KindHostDeprovision
	KindHostDrain       = rackcloud.KindHostDrain
	KindHostActivate    = rackcloud.KindHostActivate
)

// lifecycle asks the host lifecycle whether ev may start from h's state:
// the kind of the task that carries it out, or a 409 that says what the
// host can do instead.
func lifecycle(h *rackcloud.Host, ev rackcloud.HostEvent) (string, error) {
	life := rackcloud.HostLife{State: h.State}
	if h.Failure != nil {
		life.FailedIn = h.Failure.In
	}
	tr, err := rackcloud.NextHost(life, ev)
	if err != nil {
		return "", huma.Error409Conflict("host " + h.Name + ": " + strings.TrimPrefix(err.Error(), rackcloud.ErrConflict.Error()+": "))
	}
	return tr.Task, nil
}

// BMCBody registers a BMC.
type BMCBody struct {
	Address  string `json:"address" minLength:"3" maxLength:"255" pattern:"^[A-Za-z0-9.:\\[\\]-]+$" doc:"host:port of the BMC (port defaults to 623 for ipmi, 443 for redfish)." example:"10.0.0.17:623"`
	Protocol string `json:"protocol" enum:"ipmi,redfish" doc:"How rackcloud talks to the BMC."`
	Username string `json:"username" minLength:"1" maxLength:"64" doc:"BMC user." example:"admin"`
	Password string `json:"password" minLength:"1" maxLength:"128" writeOnly:"true" doc:"BMC password; stored encrypted, never returned." example:"secret"`
}

// HostBody registers a host by MAC, by BMC, or both.
type HostBody struct {
	Name             string            `json:"name,omitempty" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Unique name; derived from the first MAC or the BMC address when absent." example:"r1-node07"`
	MACs             []string          `json:"macs,omitempty" maxItems:"16" uniqueItems:"true" doc:"MAC addresses of the host's NICs." example:"[\"52:54:00:aa:01:01\"]"`
	BMC              *BMCBody          `json:"bmc,omitempty" doc:"The host's BMC."`
	RackID           string            `json:"rack_id,omitempty" format:"uuid" doc:"The rack the host is in."`
	Position         int               `json:"position,omitempty" minimum:"0" maximum:"100" doc:"Rack unit."`
	Resources        *Resources        `json:"resources,omitempty" doc:"Total resources, when known before inspection."`
	Overhead         *Overhead         `json:"overhead,omitempty" doc:"Resources reserved for the host itself."`
	Labels           map[string]string `json:"labels,omitempty" doc:"Labels for selection and placement." example:"{\"ssd\":\"true\"}"`
	ProvisioningIPv4 string            `json:"provisioning_ipv4,omitempty" format:"ipv4" doc:"A fixed address for the host on the provisioning network, reserved by the boot service's DHCP: inside its subnet and best outside its dynamic range (an address in the range may be leased to another MAC already; the host then gets a pool address and the boot service logs it); unique." example:"10.77.0.21"`
	// Adoption: a host that already runs libvirtd or dockerd.
	Role        string           `json:"role,omitempty" enum:"kvm,docker" doc:"Adopt a running host: the role its daemon serves (with endpoint)."`
	Endpoint    string           `json:"endpoint,omitempty" maxLength:"512" doc:"Adopt a running host: where its daemon answers. dockerd: unix:///run/docker.sock or tcp://ADDR:2376 (mutual TLS); libvirtd: qemu+unix:///system?socket=/run/libvirt/libvirt-sock or qemu+tls://ADDR:16514/system. A host.adopt task reaches it, reads its capacity and makes the host ready." example:"tcp://10.0.0.5:2376"`
	Credentials *HostCredentials `json:"credentials,omitempty" doc:"Adopt a running host: the TLS credentials to reach its daemon (tcp and tls endpoints); the key is sealed at rest and never returned."`
}

// HostCredentials reach an adopted host's daemon over mutual TLS.
type HostCredentials struct {
	CAPEM      string `json:"ca_pem,omitempty" maxLength:"65536" doc:"The CA that signed the daemon's certificate (PEM)."`
	CertPEM    string `json:"cert_pem,omitempty" maxLength:"65536" doc:"rackcloud's client certificate (PEM)."`
	KeyPEM     string `json:"key_pem,omitempty" maxLength:"65536" doc:"Its private key (PEM); write-only."`
	ServerName string `json:"server_name,omitempty" maxLength:"253" doc:"The name in the daemon's certificate; the endpoint's host when absent."`
}

// HostUpdateBody changes a host's place, overhead and labels; lifecycle
// changes are tasks.
type HostUpdateBody struct {
	RackID           *string           `json:"rack_id,omitempty" format:"uuid" doc:"The rack the host is in."`
	Position         *int              `json:"position,omitempty" minimum:"0" maximum:"100" doc:"Rack unit."`
	Overhead         *Overhead         `json:"overhead,omitempty" doc:"Resources reserved for the host itself."`
	Overcommit       *Overcommit       `json:"overcommit,omitempty" doc:"Per-resource overcommit ratios (0 inherits the zone's, else 1); the database refuses no claim already made, but new ones are judged by the new capacity."`
	Labels           map[string]string `json:"labels,omitempty" doc:"Replaces all labels when present."`
	ProvisioningIPv4 *string           `json:"provisioning_ipv4,omitempty" doc:"A fixed IPv4 address on the provisioning network; an empty string removes it." example:"10.77.0.21"`
}

// ProvisionBody asks for a host to be installed.
type ProvisionBody struct {
	Role    string `json:"role" enum:"bm,kvm,docker" doc:"What to install the host as."`
	ImageID string `json:"image_id" format:"uuid" doc:"The image to install; it must serve the role."`
}

// MaintenanceBody enters or leaves maintenance.
type MaintenanceBody struct {
	Enabled bool   `json:"enabled" doc:"true drains the host into maintenance; false returns it to service."`
	Reason  string `json:"reason,omitempty" maxLength:"1024" doc:"Why, for the audit log and the task." example:"replace DIMM B2"`
	// NoEvacuate keeps the guests where they are while the host drains.
	NoEvacuate bool `json:"no_evacuate,omitempty" doc:"With enabled=true: do not move the guests off (by default the drain evacuates the host: each guest is migrated cold to another host); wait until their owners stop or move them."`
}

type hostListParams struct {
	ListParams
	State  string `query:"state" enum:"discovered,inspecting,available,provisioning,ready,draining,maintenance,deprovisioning,failed" doc:"Only hosts in this state."`
	RackID string `query:"rack_id" format:"uuid" doc:"Only hosts in this rack."`
	MAC    string `query:"mac" maxLength:"32" doc:"Only the host with this MAC address." example:"52:54:00:aa:01:01"`
}

func registerHosts(a *API) {
	c := &crud[rackcloud.Host, Host]{a: a, tag: "Hosts", path: "/v1/hosts", kind: "host", opName: "Host", plural: "Hosts",
		read: staffOnly, write: staffOnly, get: store.GetHost, list: store.ListHosts, del: store.DeleteHost,
		meta: func(h rackcloud.Host) rackcloud.Meta { return h.Meta }, out: hostOut,
		delDoc: "Forgets a host that runs no guests (409 otherwise). The machine itself is not touched: deprovision it first to wipe it."}
	registerList(c, "Lists hosts in name order, keyset-paginated, by state, rack, MAC and labels.", func(in *hostListParams) (ListParams, url.Values, func(*store.Filter)) {
		return in.ListParams, url.Values{"state": {in.State}, "rack_id": {in.RackID}, "mac": {in.MAC}}, func(f *store.Filter) {
			f.State, f.Parent, f.MAC = in.State, in.RackID, in.MAC
		}
	})
	c.registerGet()
	c.registerDelete()
	registerHostBMC(a, c)

	register(a, huma.Operation{
		OperationID: "registerHost", Method: http.MethodPost, Path: "/v1/hosts", Summary: "Register a host",
		Description: "Records a host by its MACs (the boot service then recognises it) and/or its BMC (enroll it next with POST /v1/hosts/{id}/enroll). Nothing is done to the machine: the host starts discovered.",
		Tags:        []string{c.tag}, DefaultStatus: http.StatusCreated, Errors: []int{http.StatusConflict},
	}, staffOnly, func(ctx context.Context, in *struct{ Body HostBody }) (*itemOutput[Host], error) {
		h, err := a.hostFromBody(in.Body)
		if err != nil {
			return nil, err
		}
		ch := a.newChange(ctx, "registerHost", "host/"+h.Name)
		return c.created(ctx, ch, func(tx pgx.Tx) (rackcloud.Host, error) {
			if h.RackID != "" {
				if _, err := store.GetRack(ctx, tx, h.RackID); err != nil {
					return h, notFoundField(err, "body.rack_id", h.RackID)
				}
			}
			created, err := store.CreateHost(ctx, tx, h)
			if err != nil {
				return created, err
			}
			if h.BMC != nil {
				if err := a.setBMCPassword(ctx, tx, created.ID, h.BMC.Password); err != nil {
					return created, err
				}
			}
			if in.Body.Endpoint == "" {
				return created, nil
			}
			return a.adopt(ctx, tx, ch, created, in.Body)
		})
	})

	register(a, huma.Operation{
		OperationID: "updateHost", Method: http.MethodPatch, Path: "/v1/hosts/{id}", Summary: "Update a host",
		Description: "Changes a host's rack, position, overhead and labels. Lifecycle changes (enroll, provision, maintenance) are tasks of their own.",
		Tags:        []string{c.tag}, Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed},
	}, staffOnly, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body HostUpdateBody
	}) (*itemOutput[Host], error) {
		if err := checkLabels("body.labels", in.Body.Labels); err != nil {
			return nil, err
		}
		return c.patch(ctx, "updateHost", in.ID, in.IfMatch, func(tx pgx.Tx, h *rackcloud.Host) error {
			if in.Body.RackID != nil {
				if _, err := store.GetRack(ctx, tx, *in.Body.RackID); err != nil {
					return notFoundField(err, "body.rack_id", *in.Body.RackID)
				}
				h.RackID = *in.Body.RackID
			}
			if in.Body.Position != nil {
				h.Position = *in.Body.Position
			}
			if in.Body.Overhead != nil {
				h.Overhead = overheadIn(*in.Body.Overhead)
			}
			if o := in.Body.Overcommit; o != nil {
				oc, err := overcommitIn("body.overcommit", *o, rackcloud.MinHostOvercommit)
				if err != nil {
					return err
				}
				h.Overcommit = oc
			}
			if in.Body.Labels != nil {
				h.Labels = in.Body.Labels
			}
			if in.Body.ProvisioningIPv4 != nil {
				ip, err := provisioningIPv4("body.provisioning_ipv4", *in.Body.ProvisioningIPv4)
				if err != nil {
					return err
				}
				h.ProvisioningIPv4 = ip
			}
			return nil
		}, store.UpdateHost)
	})

	hostTask(a, c, huma.Operation{
		OperationID: "enrollHost", Method: http.MethodPost, Path: "/v1/hosts/{id}/enroll", Summary: "Enroll a host through its BMC",
		Description: "Starts a host.enroll task: the host is made inspecting, learns its NICs' MACs from a Redfish BMC when it has none, is set to boot from PXE and powered on through the BMC; its agent's inventory then makes it available. The host needs a BMC, and a MAC when its BMC speaks IPMI.",
	}, func(ctx context.Context, tx pgx.Tx, h *rackcloud.Host, _ *struct{}) (string, any, error) {
		if h.BMC == nil {
			return "", nil, huma.Error409Conflict("host " + h.Name + " has no BMC: register one first")
		}
		if len(h.MACs) == 0 && h.BMC.Protocol == rackcloud.BMCIPMI {
			return "", nil, huma.Error409Conflict("host " + h.Name + " has no MAC, and an IPMI BMC cannot report them: register its boot NIC's MAC first (a Redfish BMC reports them)")
		}
		kind, err := lifecycle(h, rackcloud.HostEvInspect)
		return kind, rackcloud.HostTaskParams{HostID: h.ID}, err
	})

	hostTask(a, c, huma.Operation{
		OperationID: "provisionHost", Method: http.MethodPost, Path: "/v1/hosts/{id}/provision", Summary: "Provision a host",
		Description: "Starts a host.provision task that installs the image and the role on an available host.",
	}, func(ctx context.Context, tx pgx.Tx, h *rackcloud.Host, body *ProvisionBody) (string, any, error) {
		im, err := store.GetImage(ctx, tx, body.ImageID)
		if err != nil {
			return "", nil, notFoundField(err, "body.image_id", body.ImageID)
		}
		if len(im.Roles) > 0 && !slices.Contains(im.Roles, rackcloud.HostRole(body.Role)) {
			return "", nil, huma.Error422UnprocessableEntity("image "+im.Name+" does not serve role "+body.Role,
				&huma.ErrorDetail{Location: "body.role", Message: "the image's roles are " + strings.Join(roleNames(im.Roles), ", "), Value: body.Role})
		}
		kind, err := lifecycle(h, rackcloud.HostEvProvision)
		return kind, rackcloud.HostProvisionParams{HostID: h.ID, Role: rackcloud.HostRole(body.Role), ImageID: body.ImageID}, err
	})

	hostTask(a, c, huma.Operation{
		OperationID: "deprovisionHost", Method: http.MethodPost, Path: "/v1/hosts/{id}/deprovision", Summary: "Deprovision a host",
		Description: "Starts a host.deprovision task that wipes the host and returns it to available. The host must run no guests.",
	}, func(ctx context.Context, tx pgx.Tx, h *rackcloud.Host, _ *struct{}) (string, any, error) {
		kind, err := lifecycle(h, rackcloud.HostEvDeprovision)
		if err != nil {
			return "", nil, err
		}
		n, err := store.CountGuestsOnHost(ctx, tx, h.ID)
		if err != nil {
			return "", nil, err
		}
		if n > 0 {
			return "", nil, huma.Error409Conflict("host " + h.Name + " still runs guests: drain it first")
		}
		return kind, rackcloud.HostTaskParams{HostID: h.ID}, nil
	})

	hostTask(a, c, huma.Operation{
		OperationID: "retryHost", Method: http.MethodPost, Path: "/v1/hosts/{id}/retry", Summary: "Retry a failed host",
		Description: "Resumes a failed host at the step that failed: the task that moves hosts through the state it failed in " +
			"(host.enroll for inspecting, host.provision for provisioning...) runs again; its steps are idempotent, so what was done is not done twice.",
	}, func(ctx context.Context, tx pgx.Tx, h *rackcloud.Host, _ *struct{}) (string, any, error) {
		kind, err := lifecycle(h, rackcloud.HostEvRetry)
		if err != nil {
			return "", nil, err
		}
		if kind == KindHostProvision {
			return kind, rackcloud.HostProvisionParams{HostID: h.ID, Role: h.Role, ImageID: h.ImageID}, nil
		}
		return kind, rackcloud.HostTaskParams{HostID: h.ID}, nil
	})

	hostTask(a, c, huma.Operation{
		OperationID: "resetHost", Method: http.MethodPost, Path: "/v1/hosts/{id}/reset", Summary: "Reset a failed host",
		Description: "Starts a host.deprovision task that wipes a failed host (partition tables and the ends of its disks) and returns it to available. A host that still holds guests (a fenced host keeps those with HA policy none, and those no other host could take) is a 409: wiping it would destroy their disks; evacuate it or delete them first.",
	}, func(ctx context.Context, tx pgx.Tx, h *rackcloud.Host, _ *struct{}) (string, any, error) {
		kind, err := lifecycle(h, rackcloud.HostEvReset)
		if err != nil {
			return "", nil, err
		}
		n, err := store.CountGuestsOnHost(ctx, tx, h.ID)
		if err != nil {
			return "", nil, err
		}
		if n > 0 {
			return "", nil, huma.Error409Conflict(fmt.Sprintf("host %s still holds %d guest(s): wiping it would destroy their disks; evacuate it or delete them first", h.Name, n))
		}
		return kind, rackcloud.HostTaskParams{HostID: h.ID}, nil
	})

	hostTask(a, c, huma.Operation{
		OperationID: "setHostMaintenance", Method: http.MethodPost, Path: "/v1/hosts/{id}/maintenance", Summary: "Enter or leave maintenance",
		Description: "enabled=true starts a host.drain task: no new guests; every guest is migrated cold to another host (a host.evacuate sub-task, unless no_evacuate); once none is left running, maintenance. enabled=false starts a host.activate task that returns the host to service.",
	}, func(ctx context.Context, tx pgx.Tx, h *rackcloud.Host, body *MaintenanceBody) (string, any, error) {
		ev := rackcloud.HostEvActivate
		if body.Enabled {
			ev = rackcloud.HostEvDrain
		}
		kind, err := lifecycle(h, ev)
		return kind, rackcloud.HostMaintenanceParams{HostID: h.ID, Reason: body.Reason, NoEvacuate: body.NoEvacuate}, err
	})
}

// hostTaskInput is a host action's input; B is its body (struct{} for
// none, which then has no request body).
type hostTaskInput[B any] struct {
	IDParam
	Body B
}

type hostActionInput struct {
	IDParam
}

// hostTask registers an action on a host that becomes a task: check reads
// the host in the change's transaction and returns the task's kind and
// parameters, or why not.
func hostTask[B any](a *API, c *crud[rackcloud.Host, Host], op huma.Operation,
	check func(context.Context, pgx.Tx, *rackcloud.Host, *B) (string, any, error)) {
	op.Tags = []string{c.tag}
	op.DefaultStatus = http.StatusAccepted
	op.Errors = append(op.Errors, http.StatusNotFound, http.StatusConflict)
	run := func(ctx context.Context, id string, b *B) (*taskAccepted, error) {
		ch := a.newChange(ctx, op.OperationID, c.target(id))
		var acc *taskAccepted
		err := a.run(ctx, ch, func(tx pgx.Tx) error {
			h, err := store.GetHost(ctx, tx, id)
			if err != nil {
				return notFound(err, c.kind, id)
			}
			kind, params, err := check(ctx, tx, &h, b)
			if err != nil {
				return err
			}
			info, err := a.submit(ctx, tx, ch, kind, params)
			if err != nil {
				return err
			}
			acc = accepted(info)
			return nil
		})
		return acc, err
	}
	if _, none := any(new(B)).(*struct{}); none {
		register(a, op, staffOnly, func(ctx context.Context, in *hostActionInput) (*taskAccepted, error) {
			return run(ctx, in.ID, new(B))
		})
		return
	}
	register(a, op, staffOnly, func(ctx context.Context, in *hostTaskInput[B]) (*taskAccepted, error) {
		return run(ctx, in.ID, &in.Body)
	})
}

func roleNames(rs []rackcloud.HostRole) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}

// hostFromBody validates a registration.
func (a *API) hostFromBody(b HostBody) (rackcloud.Host, error) {
	if err := checkLabels("body.labels", b.Labels); err != nil {
		return rackcloud.Host{}, err
	}
	if (b.Role == "") != (b.Endpoint == "") {
		return rackcloud.Host{}, huma.Error422UnprocessableEntity("adopting a host takes a role and an endpoint",
			&huma.ErrorDetail{Location: "body.endpoint", Message: "give both role and endpoint, or neither"})
	}
	if b.Endpoint != "" {
		if err := vmctl.CheckEndpoint(rackcloud.HostRole(b.Role), b.Endpoint); err != nil {
			return rackcloud.Host{}, huma.Error422UnprocessableEntity("bad endpoint",
				&huma.ErrorDetail{Location: "body.endpoint", Message: err.Error(), Value: b.Endpoint})
		}
		if b.Credentials != nil && vmctl.IsUnixEndpoint(b.Endpoint) {
			return rackcloud.Host{}, huma.Error422UnprocessableEntity("a unix socket takes no credentials",
				&huma.ErrorDetail{Location: "body.credentials", Message: "drop credentials, or use a tcp/tls endpoint"})
		}
		if b.Credentials != nil {
			if _, err := vmctl.ClientTLS(store.HostCredentials{CAPEM: b.Credentials.CAPEM, CertPEM: b.Credentials.CertPEM,
				KeyPEM: b.Credentials.KeyPEM, ServerName: b.Credentials.ServerName}, b.Endpoint); err != nil {
				return rackcloud.Host{}, huma.Error422UnprocessableEntity("bad credentials",
					&huma.ErrorDetail{Location: "body.credentials", Message: err.Error()})
			}
		}
	}
	if len(b.MACs) == 0 && b.BMC == nil && b.Endpoint == "" {
		return rackcloud.Host{}, huma.Error422UnprocessableEntity("a host needs MACs, a BMC or an endpoint to adopt",
			&huma.ErrorDetail{Location: "body", Message: "give macs, bmc, or role and endpoint"})
	}
	h := rackcloud.Host{Meta: rackcloud.Meta{Name: b.Name, Labels: b.Labels}, RackID: b.RackID, Position: b.Position}
	ip, err := provisioningIPv4("body.provisioning_ipv4", b.ProvisioningIPv4)
	if err != nil {
		return h, err
	}
	h.ProvisioningIPv4 = ip
	for i, m := range b.MACs {
		norm, err := rackcloud.NormalizeMAC(m)
		if err != nil {
			return h, huma.Error422UnprocessableEntity("bad MAC address",
				&huma.ErrorDetail{Location: "body.macs[" + strconv.Itoa(i) + "]", Message: "want a 48-bit MAC such as 52:54:00:aa:01:01", Value: m})
		}
		h.MACs = append(h.MACs, norm)
	}
	if b.Resources != nil {
		h.Resources = resourcesIn(*b.Resources)
	}
	if b.Overhead != nil {
		h.Overhead = overheadIn(*b.Overhead)
	}
	if b.BMC != nil {
		if h.BMC, err = a.bmcFromBody(*b.BMC); err != nil {
			return h, err
		}
	}
	if h.Name == "" {
		switch {
		case len(h.MACs) > 0:
			h.Name = "host-" + strings.ReplaceAll(h.MACs[0], ":", "")
		case h.BMC == nil:
			h.Name = "adopted-" + sanitizeName(b.Endpoint)
		default:
			h.Name = "bmc-" + sanitizeName(h.BMC.Address)
		}
	}
	return h, nil
}

// sanitizeName turns s into a DNS label.
func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 58 {
		out = strings.Trim(out[:58], "-")
	}
	return out
}

// provisioningIPv4 checks a host's fixed provisioning address ("" is none).
func provisioningIPv4(loc, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() || ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return "", huma.Error422UnprocessableEntity("bad provisioning address",
			&huma.ErrorDetail{Location: loc, Message: "want a unicast IPv4 address such as 10.77.0.21", Value: s})
	}
	return ip.String(), nil
}

// bmcFromBody checks a BMC and gives its address a port by protocol.
func (a *API) bmcFromBody(b BMCBody) (*rackcloud.BMC, error) {
	if a.deps.Sealer == nil {
		return nil, huma.Error503ServiceUnavailable("this server has no secret key to store BMC passwords (start it with --secret-key-file)")
	}
	addr := b.Address
	if _, _, err := net.SplitHostPort(addr); err != nil {
		port := "623"
		if b.Protocol == string(rackcloud.BMCRedfish) {
			port = "443"
		}
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), port)
	}
	return &rackcloud.BMC{Address: addr, Protocol: rackcloud.BMCProtocol(b.Protocol), Username: b.Username,
		Password: b.Password}, nil
}

// registerHostBMC serves PUT /v1/hosts/{id}/bmc: link a BMC to a host
// (one discovered by its MAC) or change its address or credentials.
func registerHostBMC(a *API, c *crud[rackcloud.Host, Host]) {
	register(a, huma.Operation{
		OperationID: "setHostBMC", Method: http.MethodPut, Path: "/v1/hosts/{id}/bmc", Summary: "Set a host's BMC",
		Description: "Links a BMC to the host (a host discovered by its MAC has none) or replaces its address, protocol and credentials, for example after a password rotation. The password is stored encrypted and never returned; the BMC's health is unknown until it is next polled. Nothing is sent to the BMC.",
		Tags:        []string{c.tag}, Errors: []int{http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed},
	}, staffOnly, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body BMCBody
	}) (*itemOutput[Host], error) {
		b, err := a.bmcFromBody(in.Body)
		if err != nil {
			return nil, err
		}
		return c.patch(ctx, "setHostBMC", in.ID, in.IfMatch, func(_ pgx.Tx, h *rackcloud.Host) error {
			h.BMC = b
			return nil
		}, func(ctx context.Context, q store.Querier, h rackcloud.Host) (rackcloud.Host, error) {
			h, err := store.SetHostBMC(ctx, q, h)
			if err != nil {
				return h, err
			}
			return h, a.setBMCPassword(ctx, q, h.ID, b.Password)
		})
	})
}

// setBMCPassword stores a host's BMC password sealed, bound to the host's ID.
func (a *API) setBMCPassword(ctx context.Context, q store.Querier, hostID, password string) error {
	sealed, err := a.deps.Sealer.Seal(password, []byte(hostID))
	if err != nil {
		return err
	}
	return store.SetHostBMCSecret(ctx, q, hostID, sealed)
}

// adopt records an adopted host's role, endpoint and credentials and
// starts the host.adopt task that reaches its daemon.
func (a *API) adopt(ctx context.Context, tx pgx.Tx, ch *change, h rackcloud.Host, b HostBody) (rackcloud.Host, error) {
	if err := store.SetHostRole(ctx, tx, h.ID, rackcloud.HostRole(b.Role), ""); err != nil {
		return h, err
	}
	if err := store.SetHostEndpoint(ctx, tx, h.ID, b.Endpoint); err != nil {
		return h, err
	}
	if b.Credentials != nil {
		if a.deps.Sealer == nil {
			return h, huma.Error503ServiceUnavailable("this server has no secret key: it cannot keep an adopted host's key")
		}
		if err := store.SaveHostCredentials(ctx, tx, a.deps.Sealer, h.ID, store.HostCredentials{CAPEM: b.Credentials.CAPEM,
			CertPEM: b.Credentials.CertPEM, KeyPEM: b.Credentials.KeyPEM, ServerName: b.Credentials.ServerName}); err != nil {
			return h, err
		}
	}
	ch.target = "host/" + h.ID
	if _, err := a.submit(ctx, tx, ch, rackcloud.KindHostAdopt, rackcloud.HostTaskParams{HostID: h.ID}); err != nil {
		return h, err
	}
	return store.GetHost(ctx, tx, h.ID)
}
