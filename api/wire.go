package api

import (
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// This file holds the resources' wire shapes: what clients read, with the
// descriptions, enums and examples of the OpenAPI document. Handlers
// convert from the domain types of package rackcloud.

// Meta is carried by every resource.
type Meta struct {
	ID        string            `json:"id" format:"uuid" doc:"Stable identifier." example:"5f0c6f3e-8d0a-4f4e-9b8e-0a4b5c6d7e8f"`
	Name      string            `json:"name" doc:"Name, unique within the resource's parent." example:"r1-node07"`
	Labels    map[string]string `json:"labels" doc:"Labels for selection and grouping." example:"{\"ssd\":\"true\"}"`
	Version   int64             `json:"version" doc:"Increases by one on every change; the ETag is this number in quotes." example:"3"`
	CreatedAt time.Time         `json:"created_at" doc:"When the resource was created."`
	UpdatedAt time.Time         `json:"updated_at" doc:"When the resource last changed."`
}

func meta(m rackcloud.Meta) Meta {
	l := m.Labels
	if l == nil {
		l = rackcloud.Labels{}
	}
	return Meta{ID: m.ID, Name: m.Name, Labels: l, Version: m.Version, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt}
}

// nameField documents the DNS-label names of resources.
const namePattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

// Region is the top of the location tree.
type Region struct {
	Meta
	Description string `json:"description,omitempty" doc:"Free text for operators."`
}

func regionOut(r rackcloud.Region) Region {
	return Region{Meta: meta(r.Meta), Description: r.Description}
}

// Zone is a failure domain inside a region.
type Zone struct {
	Meta
	RegionID   string     `json:"region_id" format:"uuid" doc:"The region the zone is in."`
	Overcommit Overcommit `json:"overcommit" doc:"Per-resource overcommit ratios the zone's hosts take when theirs are 0; 0 here means 1."`
}

func zoneOut(z rackcloud.Zone) Zone {
	return Zone{Meta: meta(z.Meta), RegionID: z.RegionID, Overcommit: Overcommit(z.Overcommit)}
}

// Rack is a rack of hosts inside a zone.
type Rack struct {
	Meta
	ZoneID    string `json:"zone_id" format:"uuid" doc:"The zone the rack is in."`
	Positions int    `json:"positions" doc:"Rack units." example:"42"`
}

func rackOut(r rackcloud.Rack) Rack {
	return Rack{Meta: meta(r.Meta), ZoneID: r.ZoneID, Positions: r.Positions}
}

// Resources are sellable quantities of a host.
type Resources struct {
	CPUCores    int   `json:"cpu_cores" minimum:"0" maximum:"100000" doc:"CPU cores (hardware threads)." example:"32"`
	MemoryMiB   int64 `json:"memory_mib" minimum:"0" maximum:"1073741824" doc:"Memory in MiB." example:"131072"`
	DiskGiB     int64 `json:"disk_gib" minimum:"0" maximum:"1073741824" doc:"Disk in GiB." example:"1920"`
	DiskIOPS    int64 `json:"disk_iops,omitempty" minimum:"0" maximum:"1000000000" doc:"Disk IOPS."`
	NetworkMbps int64 `json:"network_mbps,omitempty" minimum:"0" maximum:"10000000" doc:"Network bandwidth in Mbit/s."`
}

// Overhead is what a host keeps for itself and never sells.
type Overhead struct {
	CPUCores  int   `json:"cpu_cores" minimum:"0" maximum:"100000" doc:"CPU cores kept for the host." example:"2"`
	MemoryMiB int64 `json:"memory_mib" minimum:"0" maximum:"1073741824" doc:"Memory kept for the host, in MiB." example:"4096"`
	DiskGiB   int64 `json:"disk_gib" minimum:"0" maximum:"1073741824" doc:"Disk kept for the host, in GiB." example:"50"`
}

func overheadIn(o Overhead) rackcloud.Resources {
	return rackcloud.Resources{CPUCores: o.CPUCores, MemoryMiB: o.MemoryMiB, DiskGiB: o.DiskGiB}
}

func overheadOut(r rackcloud.Resources) Overhead {
	return Overhead{CPUCores: r.CPUCores, MemoryMiB: r.MemoryMiB, DiskGiB: r.DiskGiB}
}

func resourcesIn(r Resources) rackcloud.Resources {
	return rackcloud.Resources{CPUCores: r.CPUCores, MemoryMiB: r.MemoryMiB, DiskGiB: r.DiskGiB, DiskIOPS: r.DiskIOPS, NetworkMbs: r.NetworkMbps}
}

func resourcesOut(r rackcloud.Resources) Resources {
	return Resources{CPUCores: r.CPUCores, MemoryMiB: r.MemoryMiB, DiskGiB: r.DiskGiB, DiskIOPS: r.DiskIOPS, NetworkMbps: r.NetworkMbs}
}

// BMC is how rackcloud reaches a host's BMC; the password is never shown.
type BMC struct {
	Address  string `json:"address" doc:"host:port of the BMC." example:"10.0.0.17:623"`
	Protocol string `json:"protocol" enum:"ipmi,redfish" doc:"How rackcloud talks to the BMC."`
	Username string `json:"username" doc:"BMC user."`
	Healthy  bool   `json:"healthy" doc:"False while the BMC does not answer."`
	Error    string `json:"error,omitempty" doc:"Why the BMC is unhealthy."`
}

// Host is a physical server.
type Host struct {
	Meta
	RackID           string               `json:"rack_id,omitempty" format:"uuid" doc:"The rack the host is in."`
	Position         int                  `json:"position,omitempty" doc:"Rack unit."`
	MACs             []string             `json:"macs" doc:"MAC addresses, lower-case colon form." example:"[\"52:54:00:aa:01:01\"]"`
	BMC              *BMC                 `json:"bmc,omitempty" doc:"The BMC, when registered."`
	Role             string               `json:"role,omitempty" enum:"bm,kvm,docker" doc:"What the host is installed as."`
	ImageID          string               `json:"image_id,omitempty" format:"uuid" doc:"The image installed or to install."`
	State            string               `json:"state" enum:"discovered,inspecting,available,provisioning,ready,draining,maintenance,deprovisioning,failed" doc:"Lifecycle state."`
	StateReason      string               `json:"state_reason,omitempty" doc:"Why the host failed: the step and the error."`
	Failure          *HostFailure         `json:"failure,omitempty" doc:"Why a failed host failed, typed; absent unless failed."`
	Task             *HostTask            `json:"task,omitempty" doc:"The task at work on the host, if any."`
	Power            string               `json:"power" enum:"on,off,unknown" doc:"Power as the BMC reports it."`
	Inventory        *rackcloud.Inventory `json:"inventory,omitempty" doc:"What inspection found."`
	Resources        Resources            `json:"resources" doc:"Total resources."`
	Overhead         Overhead             `json:"overhead" doc:"Resources reserved for the host itself, never sold."`
	Maintenance      bool                 `json:"maintenance" doc:"True keeps new guests off the host."`
	ProvisioningIPv4 string               `json:"provisioning_ipv4,omitempty" format:"ipv4" doc:"The address the boot service's DHCP reserves for the host on the provisioning network."`
	Endpoint         string               `json:"endpoint,omitempty" doc:"Where a ready kvm or docker host's daemon answers, over mutual TLS with rackcloud's host CA." example:"tcp://10.77.0.21:2376"`
	LastHeartbeat    *time.Time           `json:"last_heartbeat,omitempty" doc:"When the installed host's agent last called in."`
	Used             Resources            `json:"used" doc:"What the guests placed on the host use (read-only)."`
	Overcommit       Overcommit           `json:"overcommit" doc:"Per-resource overcommit ratios of the host; 0 takes its zone's, else 1."`
}

// HostTask is the task at work on a host.
type HostTask struct {
	ID         string `json:"id" format:"uuid" doc:"The task."`
	Kind       string `json:"kind" doc:"What it does." example:"host.enroll"`
	Step       string `json:"step" doc:"The step in progress." example:"await-inventory"`
	WaitingFor string `json:"waiting_for,omitempty" doc:"What the step waits for from the machine." example:"inventory from the host's agent"`
}

// HostFailure is why a failed host failed.
type HostFailure struct {
	Reason string `json:"reason" enum:"bmc_unreachable,bmc_refused,no_dhcp,no_tftp,no_callback,agent_timeout,no_disk,disk_too_small,download_failed,checksum_mismatch,disk_write,first_boot_timeout,role_unreachable,fenced,internal" doc:"Why, in a word a script can match."`
	Step   string `json:"step,omitempty" doc:"The task step that failed." example:"await-inventory"`
	In     string `json:"in" enum:"inspecting,provisioning,deprovisioning,draining" doc:"The state the host failed in: where host retry resumes."`
	Detail string `json:"detail,omitempty" doc:"The error, for a person."`
	TaskID string `json:"task_id,omitempty" format:"uuid" doc:"The task whose step failed."`
}

// Overcommit multiplies what a host sells of each resource after its
// overhead.
type Overcommit struct {
	CPU    float64 `json:"cpu,omitempty" minimum:"0" maximum:"64" doc:"CPU ratio (e.g. 4: four vCPUs per core); 0 inherits."`
	Memory float64 `json:"memory,omitempty" minimum:"0" maximum:"64" doc:"Memory ratio; 0 inherits."`
	Disk   float64 `json:"disk,omitempty" minimum:"0" maximum:"64" doc:"Disk ratio; 0 inherits."`
}

func hostOut(h rackcloud.Host) Host {
	out := Host{Meta: meta(h.Meta), RackID: h.RackID, Position: h.Position, MACs: h.MACs, Role: string(h.Role),
		ImageID: h.ImageID, State: string(h.State), StateReason: h.StateReason, Power: string(h.Power),
		Inventory: h.Inventory, Resources: resourcesOut(h.Resources), Overhead: overheadOut(h.Overhead),
		Maintenance: h.Maintenance, ProvisioningIPv4: h.ProvisioningIPv4, Endpoint: h.Endpoint, LastHeartbeat: h.LastHeartbeat,
		Used: resourcesOut(h.Used), Overcommit: Overcommit(h.Overcommit)}
	if t := h.Task; t != nil {
		out.Task = &HostTask{ID: t.ID, Kind: t.Kind, Step: t.Step, WaitingFor: t.WaitingFor}
	}
	if f := h.Failure; f != nil {
		out.Failure = &HostFailure{Reason: string(f.Reason), Step: f.Step, In: string(f.In), Detail: f.Detail, TaskID: f.TaskID}
	}
	if out.MACs == nil {
		out.MACs = []string{}
	}
	if h.BMC != nil {
		out.BMC = &BMC{Address: h.BMC.Address, Protocol: string(h.BMC.Protocol), Username: h.BMC.Username,
			Healthy: h.BMC.Healthy, Error: h.BMC.Error}
	}
	return out
}

// BootProfile is how to boot an image over the network.
type BootProfile struct {
	Kernel  string `json:"kernel,omitempty" maxLength:"2048" doc:"Kernel URL or path." example:"http://boot.example/vmlinuz"`
	Initrd  string `json:"initrd,omitempty" maxLength:"2048" doc:"Initrd URL or path."`
	Cmdline string `json:"cmdline,omitempty" maxLength:"4096" doc:"Kernel command line." example:"console=ttyS0"`
	Script  string `json:"script,omitempty" maxLength:"16384" doc:"An iPXE template replacing the default one."`
}

// Image is an OS image.
type Image struct {
	Meta
	URL      string      `json:"url" doc:"Where the image is." example:"http://images.example/debian-12.qcow2"`
	Checksum string      `json:"checksum" doc:"sha256:<hex> of the image." example:"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"`
	Format   string      `json:"format" enum:"raw,raw+zstd,qcow2,docker-archive" doc:"Format."`
	Size     int64       `json:"size" doc:"Bytes of the disk the image holds (0: not given, guest images)."`
	Roles    []string    `json:"roles" doc:"Host roles the image can serve (bm, kvm, docker)." example:"[\"kvm\"]"`
	Boot     BootProfile `json:"boot" doc:"Network boot profile."`
}

func imageOut(im rackcloud.Image) Image {
	roles := make([]string, 0, len(im.Roles))
	for _, r := range im.Roles {
		roles = append(roles, string(r))
	}
	return Image{Meta: meta(im.Meta), URL: im.URL, Checksum: im.Checksum, Format: string(im.Format), Size: im.Size, Roles: roles,
		Boot: BootProfile(im.Boot)}
}

// Flavor is the size of a guest.
type Flavor struct {
	VCPU      int   `json:"vcpu" minimum:"1" maximum:"1024" doc:"Virtual CPUs (whole cores for bm guests)." example:"2"`
	MemoryMiB int64 `json:"memory_mib" minimum:"64" maximum:"16777216" doc:"Memory in MiB." example:"2048"`
	DiskGiB   int64 `json:"disk_gib" minimum:"0" maximum:"1048576" doc:"Disk in GiB." example:"20"`
}

// Guest is a VM, a container or a whole machine given to a project.
type Guest struct {
	Meta
	ProjectID        string            `json:"project_id" format:"uuid" doc:"The owning project."`
	Kind             string            `json:"kind" enum:"vm,container,bm" doc:"What the guest is."`
	Flavor           Flavor            `json:"flavor" doc:"The guest's size."`
	ImageID          string            `json:"image_id" format:"uuid" doc:"The image the guest runs."`
	ZoneID           string            `json:"zone_id,omitempty" format:"uuid" doc:"The zone the guest must run in."`
	Selector         map[string]string `json:"selector,omitempty" doc:"Host labels the guest's host must have." example:"{\"ssd\":\"true\"}"`
	PlacementGroupID string            `json:"placement_group_id,omitempty" format:"uuid" doc:"The placement group the guest is in."`
	HA               string            `json:"ha" enum:"none,restart" doc:"What the availability controller does when the host dies."`
	State            string            `json:"state" enum:"pending,creating,running,stopped,deleting,failed" doc:"Lifecycle state."`
	HostID           string            `json:"host_id,omitempty" format:"uuid" doc:"The host the guest runs on, once placed."`
	Handle           string            `json:"handle,omitempty" doc:"The driver's ID: a libvirt domain UUID, a container ID."`
	RackID           string            `json:"rack_id,omitempty" format:"uuid" doc:"The rack the guest must run in."`
	WantHostID       string            `json:"want_host_id,omitempty" format:"uuid" doc:"The only host the guest may run on (exact placement)."`
	Constraints      []string          `json:"constraints,omitempty" doc:"Label expressions the host must meet."`
	Strategy         string            `json:"strategy" enum:"binpack,spread" doc:"How placement weighs hosts that fit."`
	StateReason      string            `json:"state_reason,omitempty" doc:"Why a failed guest failed."`
	Placement        string            `json:"placement,omitempty" doc:"Placement's last word: where the guest went and why, or why nothing fits."`
	Observed         *GuestObserved    `json:"observed,omitempty" doc:"What the guest's host last showed of it (the reconciler); it never changes state, which is what was asked for."`
}

// GuestObserved is a guest as its host last showed it.
type GuestObserved struct {
	State  string    `json:"state" enum:"running,stopped,crashed,paused,missing,unknown" doc:"What the driver saw."`
	Detail string    `json:"detail,omitempty" doc:"A line for people, e.g. exited with code 3."`
	At     time.Time `json:"at" doc:"When."`
}

func guestOut(g rackcloud.Guest) Guest {
	out := Guest{Meta: meta(g.Meta), ProjectID: g.ProjectID, Kind: string(g.Kind),
		Flavor:  Flavor{VCPU: g.Flavor.CPUCores, MemoryMiB: g.Flavor.MemoryMiB, DiskGiB: g.Flavor.DiskGiB},
		ImageID: g.ImageID, ZoneID: g.ZoneID, Selector: g.Selector, PlacementGroupID: g.PlacementGroupID,
		HA: string(g.HA), State: string(g.State), HostID: g.HostID, Handle: g.Handle, RackID: g.RackID, WantHostID: g.WantHostID,
		Constraints: g.Constraints, Strategy: string(g.Strategy), StateReason: g.StateReason, Placement: g.Placement}
	if g.Observed != nil {
		out.Observed = &GuestObserved{State: g.Observed.State, Detail: g.Observed.Detail, At: g.Observed.At}
	}
	return out
}

// PlacementGroup keeps its guests together or apart.
type PlacementGroup struct {
	Meta
	ProjectID   string  `json:"project_id" format:"uuid" doc:"The owning project."`
	Policy      string  `json:"policy" enum:"affinity,anti-affinity" doc:"Together or apart."`
	Hard        bool    `json:"hard" doc:"Hard groups refuse a placement that breaks the policy; soft ones only weigh against it."`
	Scope       string  `json:"scope" enum:"host,rack,zone" doc:"The failure domain the policy works over."`
	MaxPerScope int     `json:"max_per_scope" doc:"Anti-affinity: how many of the group's guests one host, rack or zone may hold."`
	Weight      float64 `json:"weight" doc:"How strongly a soft group's policy weighs."`
}

func placementGroupOut(p rackcloud.PlacementGroup) PlacementGroup {
	return PlacementGroup{Meta: meta(p.Meta), ProjectID: p.ProjectID, Policy: string(p.Policy), Hard: p.Hard, Scope: string(p.Scope),
		MaxPerScope: p.MaxPerScope, Weight: p.Weight}
}

// Project owns guests and has a quota.
type Project struct {
	Meta
	Description string `json:"description,omitempty" doc:"Free text."`
}

func projectOut(p rackcloud.Project) Project {
	return Project{Meta: meta(p.Meta), Description: p.Description}
}

// QuotaAmounts are amounts of a quota.
type QuotaAmounts struct {
	VCPU      int   `json:"vcpu" minimum:"0" maximum:"10000000" doc:"Virtual CPUs." example:"64"`
	MemoryMiB int64 `json:"memory_mib" minimum:"0" maximum:"10000000000" doc:"Memory in MiB." example:"262144"`
	DiskGiB   int64 `json:"disk_gib" minimum:"0" maximum:"10000000000" doc:"Disk in GiB." example:"4096"`
	Hosts     int   `json:"hosts" minimum:"0" maximum:"1000000" doc:"Whole hosts (bm guests)." example:"2"`
}

// Quota is a project's lease contract: what is reserved and what is used.
type Quota struct {
	ProjectID string       `json:"project_id" format:"uuid" doc:"The project."`
	Reserved  QuotaAmounts `json:"reserved" doc:"What is reserved for the project."`
	Used      QuotaAmounts `json:"used" doc:"What the project's guests use."`
	Version   int64        `json:"version" doc:"Increases on every change of the reservation."`
	UpdatedAt time.Time    `json:"updated_at" doc:"When the reservation last changed."`
}

func quotaOut(q store.QuotaRecord) Quota {
	return Quota{ProjectID: q.ProjectID,
		Reserved: QuotaAmounts{VCPU: q.Reserved.CPUCores, MemoryMiB: q.Reserved.MemoryMiB, DiskGiB: q.Reserved.DiskGiB, Hosts: q.Hosts},
		Used:     QuotaAmounts{VCPU: q.Used.CPUCores, MemoryMiB: q.Used.MemoryMiB, DiskGiB: q.Used.DiskGiB, Hosts: q.UsedHosts},
		Version:  q.Version, UpdatedAt: q.UpdatedAt}
}

// User is a person or a program.
type User struct {
	Meta
	Email string `json:"email,omitempty" doc:"Contact address." example:"ops@example.com"`
}

func userOut(u rackcloud.User) User { return User{Meta: meta(u.Meta), Email: u.Email} }

// Token is a bearer token, without its secret.
type Token struct {
	Meta
	UserID     string     `json:"user_id" format:"uuid" doc:"The token's user."`
	User       string     `json:"user" doc:"The user's name."`
	Role       string     `json:"role" enum:"admin,operator,member,viewer,boot" doc:"What the token may do (boot: a boot service's, boot profiles and events only)."`
	ProjectIDs []string   `json:"project_ids" doc:"Projects a member or viewer token works in."`
	Prefix     string     `json:"prefix" doc:"The secret's first characters, to tell tokens apart." example:"rct_Ab3dE9"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty" doc:"When the token stops working: at most when the token that minted it does."`
	ParentID   string     `json:"parent_id,omitempty" format:"uuid" doc:"The token that minted this one; revoking it revokes this token too."`
}

func tokenOut(t store.TokenRecord) Token {
	p := t.ProjectIDs
	if p == nil {
		p = []string{}
	}
	return Token{Meta: meta(t.Meta), UserID: t.UserID, User: t.UserName, Role: string(t.Role), ProjectIDs: p,
		Prefix: t.Prefix, ExpiresAt: t.ExpiresAt, ParentID: t.ParentID}
}

// AlertRule is a threshold over a metric.
type AlertRule struct {
	Meta
	Description string  `json:"description,omitempty" doc:"What the alert means and what to do."`
	Expr        string  `json:"expr" doc:"PromQL expression compared with the threshold." example:"rackcloud_host_temperature_celsius"`
	Op          string  `json:"op" enum:">,>=,<,<=,==,!=" doc:"Comparison of expr with threshold."`
	Threshold   float64 `json:"threshold" doc:"The threshold." example:"80"`
	ForSeconds  int64   `json:"for_seconds" doc:"How long the condition must hold before the alert fires." example:"120"`
	Severity    string  `json:"severity" enum:"info,warning,critical" doc:"How urgent the alert is."`
	Scope       string  `json:"scope" enum:"fleet,zone,rack,host,project" doc:"What the rule watches."`
	ScopeID     string  `json:"scope_id,omitempty" format:"uuid" doc:"The zone, rack, host or project watched (absent for fleet)."`
}

func alertRuleOut(r store.AlertRuleRecord) AlertRule {
	return AlertRule{Meta: meta(r.Meta), Description: r.Description, Expr: r.Expr, Op: r.Op, Threshold: r.Threshold,
		ForSeconds: int64(r.For / time.Second), Severity: r.Severity, Scope: string(r.Scope), ScopeID: r.ScopeID}
}

// AuditEvent records one change or attempted change.
type AuditEvent struct {
	ID        string    `json:"id" doc:"Increasing identifier." example:"1042"`
	At        time.Time `json:"at" doc:"When it happened."`
	Actor     string    `json:"actor" doc:"Who acted." example:"user:admin"`
	TokenID   string    `json:"token_id,omitempty" format:"uuid" doc:"The token used."`
	Action    string    `json:"action" doc:"The operation." example:"createGuest"`
	Target    string    `json:"target" doc:"What it acted on." example:"guest/5f0c6f3e-8d0a-4f4e-9b8e-0a4b5c6d7e8f"`
	ProjectID string    `json:"project_id,omitempty" format:"uuid" doc:"The project of the target, if any."`
	Outcome   string    `json:"outcome" enum:"success,denied,failure" doc:"How it ended."`
	RequestID string    `json:"request_id,omitempty" doc:"The request's X-Request-ID."`
	Detail    string    `json:"detail,omitempty" doc:"Why it was denied or failed."`
}

func auditOut(e store.AuditRecord) AuditEvent {
	return AuditEvent{ID: e.ID, At: e.At, Actor: e.Actor, TokenID: e.TokenID, Action: e.Action, Target: e.Target,
		ProjectID: e.ProjectID, Outcome: e.Outcome, RequestID: e.RequestID, Detail: e.Detail}
}
