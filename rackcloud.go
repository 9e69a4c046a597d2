// Package rackcloud holds the domain of the system: the nouns every other
// package talks in (Region, Zone, Rack, Host, BMC, Image, Guest,
// PlacementGroup, Project, User, Token, Quota, Task, AlertRule, AuditEvent),
// their lifecycle states, and the few errors shared across packages.
//
// Packages own behaviour, not nouns: store persists these types, api serves
// them, pxe boots hosts, bmc drives their BMCs, provisioner moves hosts
// through their lifecycle, vmctl places and runs guests, monitor and alerts
// watch them. See ../shared/DESIGN.md for the picture.
package rackcloud

import (
	"errors"
	"net"
	"time"
)

// Errors shared across packages. Only the api package maps them to HTTP.
var (
	// ErrNotFound: the named resource does not exist (or is not visible).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change conflicts with the current state: a duplicate
	// name, a stale version, an active task on the same resource.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request itself is malformed or out of range.
	ErrInvalid = errors.New("invalid")
)

// Labels are free-form key/value pairs used for selection and grouping.
type Labels map[string]string

// Meta is carried by every stored resource.
type Meta struct {
	// ID is a stable, opaque identifier (a UUID).
	ID string `json:"id"`
	// Name is unique within the resource's parent.
	Name string `json:"name"`
	// Labels select and group resources.
	Labels Labels `json:"labels,omitempty"`
	// Version increases by one on every update; updates carry the version
	// they read and fail with ErrConflict when it moved (optimistic locking).
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Region is the top of the location tree: a set of zones under one control
// plane.
type Region struct {
	Meta
	Description string `json:"description,omitempty"`
}

// Zone is one failure domain inside a region (a room, a building).
type Zone struct {
	Meta
	RegionID string `json:"region_id"`
	// Overcommit is the ratio a host of the zone takes when its own is 0;
	// 0 here means 1 (see CheckOvercommit).
	Overcommit Overcommit `json:"overcommit"`
}

// Rack is a rack of hosts inside a zone; hosts close together fail together.
type Rack struct {
	Meta
	ZoneID string `json:"zone_id"`
	// Positions is the number of rack units.
	Positions int `json:"positions"`
}

// HostState is a host's lifecycle state (DESIGN.md section 3).
type HostState string

// Host lifecycle states.
const (
	HostDiscovered     HostState = "discovered"
	HostInspecting     HostState = "inspecting"
	HostAvailable      HostState = "available"
	HostProvisioning   HostState = "provisioning"
	HostReady          HostState = "ready"
	HostDraining       HostState = "draining"
	HostMaintenance    HostState = "maintenance"
	HostDeprovisioning HostState = "deprovisioning"
	HostFailed         HostState = "failed"
)

// HostRole is what a host is installed as.
type HostRole string

// Host roles.
const (
	RoleBareMetal HostRole = "bm"
	RoleKVM       HostRole = "kvm"
	RoleDocker    HostRole = "docker"
)

// PowerState is a machine's power as its BMC reports it.
type PowerState string

// Power states.
const (
	PowerOn      PowerState = "on"
	PowerOff     PowerState = "off"
	PowerUnknown PowerState = "unknown"
)

// Resources are the sellable quantities of a host or the size of a guest.
type Resources struct {
	CPUCores   int   `json:"cpu_cores"`
	MemoryMiB  int64 `json:"memory_mib"`
	DiskGiB    int64 `json:"disk_gib"`
	DiskIOPS   int64 `json:"disk_iops,omitempty"`
	NetworkMbs int64 `json:"network_mbps,omitempty"`
}

// Inventory is what the inspection agent reports about a machine.
type Inventory struct {
	Vendor     string          `json:"vendor,omitempty"`
	Product    string          `json:"product,omitempty"`
	Serial     string          `json:"serial,omitempty"`
	CPUModel   string          `json:"cpu_model,omitempty"`
	CPUs       int             `json:"cpus"`
	MemoryMiB  int64           `json:"memory_mib"`
	Disks      []InventoryDisk `json:"disks,omitempty"`
	NICs       []InventoryNIC  `json:"nics,omitempty"`
	BMCAddress string          `json:"bmc_address,omitempty"`
	Firmware   string          `json:"firmware,omitempty"` // bios|uefi
	// Wiped lists the disks the agent wiped before this report (a
	// deprovisioning boot): nil when it wiped nothing, empty when the
	// host has no disk.
	Wiped []string `json:"wiped,omitempty"`
	// StandbySeconds, when set, says the agent stays up this long after
	// the report, asking for an install plan: a host provisioned
	// meanwhile installs from this boot (fast track) instead of being
	// powered on into the installer again.
	StandbySeconds int `json:"standby_seconds,omitempty"`
}

// InventoryDisk is one block device seen by the agent.
type InventoryDisk struct {
	Name       string `json:"name"`
	SizeBytes  int64  `json:"size_bytes"`
	Rotational bool   `json:"rotational"`
	Model      string `json:"model,omitempty"`
}

// InventoryNIC is one network interface seen by the agent.
type InventoryNIC struct {
	Name  string `json:"name"`
	MAC   string `json:"mac"`
	Speed int    `json:"speed_mbps,omitempty"`
}

// BMCProtocol names how rackcloud talks to a BMC.
type BMCProtocol string

// BMC protocols.
const (
	BMCIPMI    BMCProtocol = "ipmi"
	BMCRedfish BMCProtocol = "redfish"
)

// BMC is how to reach a host's baseboard management controller. The password
// is stored encrypted at rest and never returned by the API.
type BMC struct {
	Address  string      `json:"address"` // host:port
	Protocol BMCProtocol `json:"protocol"`
	Username string      `json:"username"`
	Password string      `json:"-"`
	// Healthy is false while the BMC does not answer; Error says why.
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
}

// HostTask is the task at work on a host, as a host shows it.
type HostTask struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Step names the step in progress; WaitingFor what it waits for from
	// the machine, if it waits.
	Step       string `json:"step"`
	WaitingFor string `json:"waiting_for,omitempty"`
}

// Host is a physical server.
type Host struct {
	Meta
	RackID   string    `json:"rack_id,omitempty"`
	Position int       `json:"position,omitempty"`
	MACs     []string  `json:"macs"`
	BMC      *BMC      `json:"bmc,omitempty"`
	Role     HostRole  `json:"role,omitempty"`
	ImageID  string    `json:"image_id,omitempty"`
	State    HostState `json:"state"`
	// StateReason explains a failed state (the step and the error).
	StateReason string `json:"state_reason,omitempty"`
	// Failure says why a failed host failed, typed; nil unless failed.
	Failure *HostFailure `json:"failure,omitempty"`
	// Task is the host's active task, if any: what is being done to it.
	Task      *HostTask  `json:"task,omitempty"`
	Power     PowerState `json:"power"`
	Inventory *Inventory `json:"inventory,omitempty"`
	// Resources are the host's total resources; Overhead is reserved for the
	// host itself and never sold.
	Resources Resources `json:"resources"`
	Overhead  Resources `json:"overhead"`
	// Maintenance keeps new guests off the host.
	Maintenance bool `json:"maintenance"`
	// ProvisioningIPv4, when set, is the address the boot service's DHCP
	// reserves for the host on the provisioning network.
	ProvisioningIPv4 string `json:"provisioning_ipv4,omitempty"`
	// Endpoint is where a ready host's role daemon answers (mutual TLS):
	// tcp://ADDR:2376 for dockerd, qemu+tls://ADDR/system for libvirtd.
	Endpoint string `json:"endpoint,omitempty"`
	// LastHeartbeat is when the installed host's agent last called in.
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	// Overcommit multiplies what the host can sell of each resource (after
	// overhead); 0 takes the zone's ratio, else 1.
	Overcommit Overcommit `json:"overcommit"`
	// Used is what the guests placed on the host use (read-only).
	Used Resources `json:"used"`
}

// Overcommit holds per-resource overcommit ratios; 0 means inherited.
type Overcommit struct {
	CPU    float64 `json:"cpu,omitempty"`
	Memory float64 `json:"memory,omitempty"`
	Disk   float64 `json:"disk,omitempty"`
}

// ImageFormat is an OS image's disk format.
type ImageFormat string

// Image formats.
const (
	FormatRaw ImageFormat = "raw"
	// FormatRawZstd is a raw disk as independent zstd frames (imagefmt).
	FormatRawZstd ImageFormat = "raw+zstd"
	FormatQCOW2   ImageFormat = "qcow2"
	// FormatDockerArchive is a container image as `docker save` writes
	// it (a tar with manifest.json), loaded into dockerd without a
	// registry.
	FormatDockerArchive ImageFormat = "docker-archive"
)

// BootProfile is how to boot an image over the network.
type BootProfile struct {
	Kernel  string `json:"kernel,omitempty"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
	// Script, when set, is an iPXE template that replaces the default one.
	Script string `json:"script,omitempty"`
}

// Image is an OS image; inspection and install images are images too.
type Image struct {
	Meta
	URL      string      `json:"url"`
	Checksum string      `json:"checksum"` // sha256:<hex>
	Format   ImageFormat `json:"format"`
	// Size is the disk's size in bytes (raw, whatever the format): what
	// the installer writes and reads back to check Checksum.
	Size  int64       `json:"size,omitempty"`
	Roles []HostRole  `json:"roles,omitempty"`
	Boot  BootProfile `json:"boot"`
}

// GuestKind is what a guest is.
type GuestKind string

// Guest kinds.
const (
	GuestVM        GuestKind = "vm"
	GuestContainer GuestKind = "container"
	GuestBareMetal GuestKind = "bm"
)

// GuestState is a guest's lifecycle state.
type GuestState string

// Guest states.
const (
	GuestPending  GuestState = "pending"
	GuestCreating GuestState = "creating"
	GuestRunning  GuestState = "running"
	GuestStopped  GuestState = "stopped"
	GuestDeleting GuestState = "deleting"
	GuestFailed   GuestState = "failed"
)

// HAPolicy says what the availability controller does when a guest's host
// dies.
type HAPolicy string

// HA policies.
const (
	HANone    HAPolicy = "none"
	HARestart HAPolicy = "restart"
)

// Guest is a VM, a container or a whole machine given to a project.
type Guest struct {
	Meta
	ProjectID        string     `json:"project_id"`
	Kind             GuestKind  `json:"kind"`
	Flavor           Resources  `json:"flavor"`
	ImageID          string     `json:"image_id"`
	ZoneID           string     `json:"zone_id,omitempty"`
	Selector         Labels     `json:"selector,omitempty"`
	PlacementGroupID string     `json:"placement_group_id,omitempty"`
	HA               HAPolicy   `json:"ha"`
	State            GuestState `json:"state"`
	HostID           string     `json:"host_id,omitempty"`
	// Handle is the driver's ID: a libvirt domain UUID, a container ID.
	Handle string `json:"handle,omitempty"`
	// RackID, when set, keeps the guest in that rack; WantHostID places
	// it on that host only (exact placement).
	RackID     string `json:"rack_id,omitempty"`
	WantHostID string `json:"want_host_id,omitempty"`
	// Constraints are label expressions over host labels ("ssd",
	// "!spot", "tier in (a,b)"), all required.
	Constraints []string `json:"constraints,omitempty"`
	// Strategy packs guests onto few hosts (binpack) or spreads them.
	Strategy PlacementStrategy `json:"strategy"`
	// StateReason says why a failed guest failed.
	StateReason string `json:"state_reason,omitempty"`
	// Placement is placement's last word on the guest: where it went and
	// why, or why nothing fits.
	Placement string `json:"placement,omitempty"`
	// Observed is what the guest's driver last saw (the reconciler):
	// it never changes State, which is what was asked for.
	Observed *GuestObserved `json:"observed,omitempty"`
}

// GuestObserved is a guest as its host last showed it.
type GuestObserved struct {
	State  string    `json:"state"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
}

// PlacementStrategy is how placement weighs hosts that fit.
type PlacementStrategy string

// Placement strategies.
const (
	Binpack PlacementStrategy = "binpack"
	Spread  PlacementStrategy = "spread"
)

// HostRoleFor is the host role that runs guests of kind k.
func HostRoleFor(k GuestKind) HostRole {
	switch k {
	case GuestVM:
		return RoleKVM
	case GuestContainer:
		return RoleDocker
	case GuestBareMetal:
		return RoleBareMetal
	}
	return ""
}

// PlacementPolicy is affinity or anti-affinity.
type PlacementPolicy string

// Placement policies.
const (
	Affinity     PlacementPolicy = "affinity"
	AntiAffinity PlacementPolicy = "anti-affinity"
)

// PlacementScope is the failure domain a placement group works over.
type PlacementScope string

// Placement scopes.
const (
	ScopeHost PlacementScope = "host"
	ScopeRack PlacementScope = "rack"
	ScopeZone PlacementScope = "zone"
)

// PlacementGroup keeps its guests together or apart.
type PlacementGroup struct {
	Meta
	ProjectID string          `json:"project_id"`
	Policy    PlacementPolicy `json:"policy"`
	// Hard groups refuse a placement that breaks the policy; soft ones only
	// weigh against it.
	Hard  bool           `json:"hard"`
	Scope PlacementScope `json:"scope"`
	// MaxPerScope is how many of the group's guests anti-affinity allows
	// in one host, rack or zone (1 when 0).
	MaxPerScope int `json:"max_per_scope"`
	// Weight scales a soft group's pull or push against the other scores.
	Weight float64 `json:"weight"`
}

// Project owns guests and has a quota.
type Project struct {
	Meta
	Description string `json:"description,omitempty"`
}

// Role is what a token may do.
type Role string

// Roles, from most to least powerful; RoleBoot stands apart.
const (
	RoleAdmin    Role = "admin"
	RoleOperator Role = "operator"
	RoleMember   Role = "member"
	RoleViewer   Role = "viewer"
	// RoleBoot is a boot service's: it may read boot profiles and post
	// boot events, and nothing else (not even read the fleet). Only
	// admins and operators mint boot tokens.
	RoleBoot Role = "boot"
)

// User is a person or a program.
type User struct {
	Meta
	Email string `json:"email,omitempty"`
}

// Token authenticates a user with a role over some projects. Only its hash
// is stored; the secret is shown once at creation.
type Token struct {
	Meta
	UserID     string   `json:"user_id"`
	Role       Role     `json:"role"`
	ProjectIDs []string `json:"project_ids,omitempty"`
	// ExpiresAt is at most the expiry of ParentID, the token that minted
	// this one (none for a bootstrap token); revoking a token revokes the
	// tokens minted from it, transitively.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	ParentID  string     `json:"parent_id,omitempty"`
}

// Quota is a project's lease contract: what is reserved for it and what it
// uses.
type Quota struct {
	ProjectID string    `json:"project_id"`
	Reserved  Resources `json:"reserved"`
	Hosts     int       `json:"hosts"`
	Used      Resources `json:"used"`
	UsedHosts int       `json:"used_hosts"`
}

// TaskState is a task's state.
type TaskState string

// Task states.
const (
	TaskPending   TaskState = "pending"
	TaskRunning   TaskState = "running"
	TaskSucceeded TaskState = "succeeded"
	TaskFailed    TaskState = "failed"
	TaskCanceling TaskState = "canceling"
	TaskCanceled  TaskState = "canceled"
)

// Terminal reports whether s is an end state.
func (s TaskState) Terminal() bool {
	return s == TaskSucceeded || s == TaskFailed || s == TaskCanceled
}

// Task is one durable change: an ordered list of steps, each of which may
// spawn sub-tasks (DESIGN.md section 5).
type Task struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	ParentID string `json:"parent_id,omitempty"`
	// Target is the resource the task changes ("host/<id>"); at most one
	// active task per target.
	Target    string    `json:"target,omitempty"`
	State     TaskState `json:"state"`
	Step      int       `json:"step"`
	StepName  string    `json:"step_name,omitempty"`
	Error     string    `json:"error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AlertScope is what an alert rule watches.
type AlertScope string

// Alert scopes.
const (
	AlertFleet   AlertScope = "fleet"
	AlertZone    AlertScope = "zone"
	AlertRack    AlertScope = "rack"
	AlertHost    AlertScope = "host"
	AlertProject AlertScope = "project"
)

// AlertRule is a threshold over a metric, rendered into a Prometheus rule.
type AlertRule struct {
	Meta
	Expr      string        `json:"expr"`
	Op        string        `json:"op"` // > >= < <= == !=
	Threshold float64       `json:"threshold"`
	For       time.Duration `json:"for"`
	Severity  string        `json:"severity"`
	Scope     AlertScope    `json:"scope"`
	ScopeID   string        `json:"scope_id,omitempty"`
}

// AuditEvent records one change: who did what to which target, and how it
// ended. It is written in the same transaction as the change.
type AuditEvent struct {
	ID        string    `json:"id"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Target    string    `json:"target"`
	Outcome   string    `json:"outcome"`
	RequestID string    `json:"request_id,omitempty"`
}

// NormalizeMAC parses a MAC address and returns it in lower-case
// colon form, or ErrInvalid.
func NormalizeMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", errors.Join(ErrInvalid, errors.New("bad MAC address "+s))
	}
	return hw.String(), nil
}
