package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

const hostCols = `h.id::text, h.name, COALESCE(h.rack_id::text, ''), h.position, h.role, COALESCE(h.image_id::text, ''),
	h.state, h.state_reason, h.power, COALESCE(h.bmc_address, ''), h.bmc_protocol, h.bmc_username, h.bmc_healthy, h.bmc_error,
	h.inventory, h.cpu_cores, h.memory_mib, h.disk_gib, h.disk_iops, h.network_mbps,
	h.overhead_cpu_cores, h.overhead_memory_mib, h.overhead_disk_gib, h.maintenance,
	h.macs, h.labels, h.version, h.created_at, h.updated_at, COALESCE(host(h.provisioning_ipv4), ''),
	h.failure_reason, h.failure_step, COALESCE(h.failure_task::text, ''), h.failed_in, h.endpoint, h.last_heartbeat,
	(SELECT json_build_object('id', t.id, 'kind', t.kind, 'step', t.step_name, 'waiting_for', t.waiting_for)
		FROM tasks t WHERE t.target = 'host/' || h.id::text AND t.state IN ('pending', 'running', 'canceling')),
	COALESCE(h.overcommit_cpu, 0), COALESCE(h.overcommit_memory, 0), COALESCE(h.overcommit_disk, 0),
	COALESCE((SELECT json_build_object('cpu_cores', u.used_vcpu, 'memory_mib', u.used_memory_mib, 'disk_gib', u.used_disk_gib)
		FROM host_usage u WHERE u.host_id = h.id), '{}')`

func scanHost(row pgx.Row) (rackcloud.Host, error) {
	var h rackcloud.Host
	var bmcAddr, bmcProto, bmcUser, bmcErr string
	var bmcHealthy bool
	var fail rackcloud.HostFailure
	err := row.Scan(&h.ID, &h.Name, &h.RackID, &h.Position, &h.Role, &h.ImageID,
		&h.State, &h.StateReason, &h.Power, &bmcAddr, &bmcProto, &bmcUser, &bmcHealthy, &bmcErr,
		&h.Inventory, &h.Resources.CPUCores, &h.Resources.MemoryMiB, &h.Resources.DiskGiB, &h.Resources.DiskIOPS,
		&h.Resources.NetworkMbs, &h.Overhead.CPUCores, &h.Overhead.MemoryMiB, &h.Overhead.DiskGiB, &h.Maintenance, &h.MACs, &h.Labels, &h.Version, &h.CreatedAt, &h.UpdatedAt, &h.ProvisioningIPv4,
		&fail.Reason, &fail.Step, &fail.TaskID, &fail.In, &h.Endpoint, &h.LastHeartbeat, &h.Task,
		&h.Overcommit.CPU, &h.Overcommit.Memory, &h.Overcommit.Disk, &h.Used)
	if err != nil {
		return h, MapError(err)
	}
	if bmcAddr != "" {
		h.BMC = &rackcloud.BMC{Address: bmcAddr, Protocol: rackcloud.BMCProtocol(bmcProto), Username: bmcUser,
			Healthy: bmcHealthy, Error: bmcErr}
	}
	if h.MACs == nil {
		h.MACs = []string{}
	}
	if fail.Reason != "" {
		fail.Detail = h.StateReason
		h.Failure = &fail
	}
	return h, nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// CreateHost inserts h with its MACs (the BMC password is set apart with
// SetHostBMCSecret). A MAC or BMC address that another host has is
// rackcloud.ErrConflict.
func CreateHost(ctx context.Context, q Querier, h rackcloud.Host) (rackcloud.Host, error) {
	var bmcAddr, bmcProto, bmcUser string
	if h.BMC != nil {
		bmcAddr, bmcProto, bmcUser = h.BMC.Address, string(h.BMC.Protocol), h.BMC.Username
	}
	if h.State == "" {
		h.State = rackcloud.HostDiscovered
	}
	if h.Power == "" {
		h.Power = rackcloud.PowerUnknown
	}
	var id string
	err := q.QueryRow(ctx, `INSERT INTO hosts (name, rack_id, position, role, image_id, state, power, bmc_address,
		bmc_protocol, bmc_username, inventory, cpu_cores, memory_mib, disk_gib, disk_iops,
		network_mbps, overhead_cpu_cores, overhead_memory_mib, overhead_disk_gib, maintenance, labels, provisioning_ipv4)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22::inet)
		RETURNING id::text`,
		h.Name, nullable(h.RackID), h.Position, string(h.Role), nullable(h.ImageID), string(h.State), string(h.Power),
		nullable(bmcAddr), bmcProto, bmcUser, h.Inventory, h.Resources.CPUCores, h.Resources.MemoryMiB,
		h.Resources.DiskGiB, h.Resources.DiskIOPS, h.Resources.NetworkMbs, h.Overhead.CPUCores, h.Overhead.MemoryMiB,
		h.Overhead.DiskGiB, h.Maintenance, labelsOrEmpty(h.Labels), nullable(h.ProvisioningIPv4)).Scan(&id)
	if err != nil {
		return rackcloud.Host{}, MapError(err)
	}
	for i, mac := range h.MACs {
		if _, err := q.Exec(ctx, `INSERT INTO host_macs (mac, host_id, idx) VALUES ($1, $2, $3)`, mac, id, i); err != nil {
			return rackcloud.Host{}, fmt.Errorf("MAC %s: %w", mac, MapError(err))
		}
	}
	return GetHost(ctx, q, id)
}

// GetHost returns the host with id, or rackcloud.ErrNotFound.
func GetHost(ctx context.Context, q Querier, id string) (rackcloud.Host, error) {
	if !ValidID(id) {
		return rackcloud.Host{}, rackcloud.ErrNotFound
	}
	return scanHost(q.QueryRow(ctx, `SELECT `+hostCols+` FROM hosts h WHERE h.id = $1`, id))
}

// GetHostByMAC returns the host that owns mac, or rackcloud.ErrNotFound.
func GetHostByMAC(ctx context.Context, q Querier, mac string) (rackcloud.Host, error) {
	norm, err := rackcloud.NormalizeMAC(mac)
	if err != nil {
		return rackcloud.Host{}, err
	}
	return scanHost(q.QueryRow(ctx, `SELECT `+hostCols+` FROM hosts h JOIN host_macs hm ON hm.host_id = h.id
		WHERE hm.mac = $1::macaddr`, norm))
}

// ListHosts lists hosts; Filter.Parent is a rack, Filter.State a
// lifecycle state and Filter.MAC one of the host's MACs.
func ListHosts(ctx context.Context, q Querier, f Filter) ([]rackcloud.Host, error) {
	s := listSpec{table: "hosts", from: "hosts h", alias: "h", cols: hostCols, stateCol: "state", parentCol: "rack_id"}
	if f.MAC != "" {
		mac, err := rackcloud.NormalizeMAC(f.MAC)
		if err != nil {
			return nil, err
		}
		s.extraFilters = func(w *where) {
			w.add("h.id = (SELECT hm.host_id FROM host_macs hm WHERE hm.mac = $?::macaddr)", mac)
		}
	}
	return listRows(ctx, q, s, f, scanHost)
}

// UpdateHost writes h's placement, role, image, inventory, resources,
// overhead, maintenance flag and labels if its version is still
// h.Version. MACs, the BMC and what the BMC poller observes (power, BMC
// health) are not changed: an edit made from a read that is a poll old
// must not put the old power state back. Nor is the lifecycle state:
// only TransitionHost moves a host.
func UpdateHost(ctx context.Context, q Querier, h rackcloud.Host) (rackcloud.Host, error) {
	var id string
	err := q.QueryRow(ctx, `UPDATE hosts SET rack_id = $3, position = $4, role = $5, image_id = $6,
		inventory = $7, cpu_cores = $8, memory_mib = $9, disk_gib = $10,
		disk_iops = $11, network_mbps = $12, overhead_cpu_cores = $13, overhead_memory_mib = $14,
		overhead_disk_gib = $15, maintenance = $16, labels = $17, provisioning_ipv4 = $18::inet,
		overcommit_cpu = NULLIF($19::float8, 0), overcommit_memory = NULLIF($20::float8, 0), overcommit_disk = NULLIF($21::float8, 0),
		version = version + 1, updated_at = now()
		WHERE id = $1::uuid AND version = $2 RETURNING id::text`,
		uuidArg(h.ID), h.Version, nullable(h.RackID), h.Position, string(h.Role), nullable(h.ImageID),
		h.Inventory, h.Resources.CPUCores, h.Resources.MemoryMiB, h.Resources.DiskGiB,
		h.Resources.DiskIOPS, h.Resources.NetworkMbs, h.Overhead.CPUCores, h.Overhead.MemoryMiB, h.Overhead.DiskGiB,
		h.Maintenance, labelsOrEmpty(h.Labels), nullable(h.ProvisioningIPv4),
		h.Overcommit.CPU, h.Overcommit.Memory, h.Overcommit.Disk).Scan(&id)
	if err != nil {
		return rackcloud.Host{}, versionError(ctx, q, "hosts", h.ID, err)
	}
	return GetHost(ctx, q, id)
}

// DeleteHost deletes a host that runs no guests (else
// rackcloud.ErrConflict), with its MACs.
func DeleteHost(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "hosts", id, version)
}

// SetHostBMC writes h.BMC's address, protocol and user name if h's
// version is still h.Version, and marks its health unknown until the next
// poll. The password goes separately, sealed (SetHostBMCSecret). A change
// of any of them (or of the password) bumps the host's BMC credentials
// generation, by trigger, so that polls begun before it are discarded.
func SetHostBMC(ctx context.Context, q Querier, h rackcloud.Host) (rackcloud.Host, error) {
	if h.BMC == nil {
		return rackcloud.Host{}, fmt.Errorf("%w: no BMC", rackcloud.ErrInvalid)
	}
	var id string
	err := q.QueryRow(ctx, `UPDATE hosts SET bmc_address = $3, bmc_protocol = $4, bmc_username = $5,
		bmc_healthy = false, bmc_error = '', version = version + 1, updated_at = now()
		WHERE id = $1::uuid AND version = $2 RETURNING id::text`,
		uuidArg(h.ID), h.Version, h.BMC.Address, string(h.BMC.Protocol), h.BMC.Username).Scan(&id)
	if err != nil {
		return rackcloud.Host{}, versionError(ctx, q, "hosts", h.ID, err)
	}
	return GetHost(ctx, q, id)
}

// HostBMCSecret returns the sealed BMC password of a host ("" when it has
// none); open it with the sealer that sealed it and the host's ID as
// additional data.
func HostBMCSecret(ctx context.Context, q Querier, id string) (string, error) {
	if !ValidID(id) {
		return "", rackcloud.ErrNotFound
	}
	var s string
	err := q.QueryRow(ctx, `SELECT bmc_password_sealed FROM hosts WHERE id = $1`, id).Scan(&s)
	return s, MapError(err)
}

// SetHostBMCSecret stores a host's sealed BMC password.
func SetHostBMCSecret(ctx context.Context, q Querier, id, sealed string) error {
	tag, err := q.Exec(ctx, `UPDATE hosts SET bmc_password_sealed = $2 WHERE id = $1::uuid`, uuidArg(id), sealed)
	if err != nil {
		return MapError(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: host %s", rackcloud.ErrNotFound, id)
	}
	return nil
}
