package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

// MonitorHost is a host as monitoring sees it: where it is (names, not
// IDs, as people read them on a dashboard), how to reach it and its BMC,
// and what it can sell and uses.
type MonitorHost struct {
	ID, Name           string
	Region, Zone, Rack string
	Role               rackcloud.HostRole
	State              rackcloud.HostState
	Power              rackcloud.PowerState
	Maintenance        bool
	Labels             rackcloud.Labels
	ProvisioningIPv4   string
	Endpoint           string
	BMCAddress         string
	BMCProtocol        rackcloud.BMCProtocol
	// Capacity is what the host can sell (after overhead and overcommit),
	// Used what its placed guests use, Guests how many there are.
	Capacity, Used rackcloud.Resources
	Guests         int
	// LastHeartbeat is when the installed host's agent last called in
	// (zero: never).
	LastHeartbeat time.Time
	// TaskKind and TaskStep name the host's active task and its current
	// step ("" when none runs); StepSince is when that step began (its
	// first event, else when the task started or was made).
	TaskKind, TaskStep string
	StepSince          time.Time
}

// MonitorGuest is a guest as monitoring sees it.
type MonitorGuest struct {
	ID, Name           string
	ProjectID, Project string
	Kind               rackcloud.GuestKind
	State              rackcloud.GuestState
	HostID             string
	Handle             string
	Labels             rackcloud.Labels
}

// MonitorInventory reads every host and every guest in two statements
// (one snapshot for service discovery and fleet metrics, read once per
// interval rather than once per request).
func MonitorInventory(ctx context.Context, q Querier) ([]MonitorHost, []MonitorGuest, error) {
	rows, err := q.Query(ctx, `SELECT h.id::text, h.name, COALESCE(g.name, ''), COALESCE(z.name, ''), COALESCE(r.name, ''),
		h.role, h.state, h.power, h.maintenance, h.labels, COALESCE(host(h.provisioning_ipv4), ''), h.endpoint,
		COALESCE(h.bmc_address, ''), h.bmc_protocol,
		COALESCE(u.cap_vcpu, 0), COALESCE(u.cap_memory_mib, 0), COALESCE(u.cap_disk_gib, 0),
		COALESCE(u.used_vcpu, 0), COALESCE(u.used_memory_mib, 0), COALESCE(u.used_disk_gib, 0), COALESCE(u.guests, 0),
		h.last_heartbeat, COALESCE(t.kind, ''), COALESCE(t.step_name, ''), t.step_since
		FROM hosts h LEFT JOIN host_usage u ON u.host_id = h.id
		LEFT JOIN LATERAL (SELECT t.kind, t.step_name, COALESCE((SELECT min(e.at) FROM task_events e
				WHERE e.task_id = t.id AND e.phase = t.phase AND e.step = t.step), t.started_at, t.created_at) AS step_since
			FROM tasks t WHERE t.target = 'host/' || h.id::text AND t.state IN ('pending', 'running', 'canceling') LIMIT 1) t ON true
		LEFT JOIN racks r ON r.id = h.rack_id LEFT JOIN zones z ON z.id = r.zone_id LEFT JOIN regions g ON g.id = z.region_id
		ORDER BY h.name`)
	if err != nil {
		return nil, nil, MapError(err)
	}
	hosts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (MonitorHost, error) {
		var h MonitorHost
		var heartbeat, stepSince *time.Time
		err := row.Scan(&h.ID, &h.Name, &h.Region, &h.Zone, &h.Rack, &h.Role, &h.State, &h.Power, &h.Maintenance, &h.Labels,
			&h.ProvisioningIPv4, &h.Endpoint, &h.BMCAddress, &h.BMCProtocol,
			&h.Capacity.CPUCores, &h.Capacity.MemoryMiB, &h.Capacity.DiskGiB,
			&h.Used.CPUCores, &h.Used.MemoryMiB, &h.Used.DiskGiB, &h.Guests,
			&heartbeat, &h.TaskKind, &h.TaskStep, &stepSince)
		if heartbeat != nil {
			h.LastHeartbeat = *heartbeat
		}
		if stepSince != nil {
			h.StepSince = *stepSince
		}
		return h, err
	})
	if err != nil {
		return nil, nil, MapError(err)
	}
	rows, err = q.Query(ctx, `SELECT g.id::text, g.name, g.project_id::text, p.name, g.kind, g.state,
		COALESCE(g.host_id::text, ''), g.handle, g.labels
		FROM guests g JOIN projects p ON p.id = g.project_id ORDER BY p.name, g.name`)
	if err != nil {
		return nil, nil, MapError(err)
	}
	guests, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (MonitorGuest, error) {
		var g MonitorGuest
		err := row.Scan(&g.ID, &g.Name, &g.ProjectID, &g.Project, &g.Kind, &g.State, &g.HostID, &g.Handle, &g.Labels)
		return g, err
	})
	if err != nil {
		return nil, nil, MapError(err)
	}
	return hosts, guests, nil
}

// Heartbeats returns when each host's agent last called in, by host ID
// (hosts that ever did): one small query, so that the heartbeat ages the
// availability alerts read are seconds fresh while the inventory snapshot
// may be older.
func Heartbeats(ctx context.Context, q Querier) (map[string]time.Time, error) {
	rows, err := q.Query(ctx, `SELECT id::text, last_heartbeat FROM hosts WHERE last_heartbeat IS NOT NULL`)
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, MapError(err)
		}
		out[id] = at
	}
	return out, MapError(rows.Err())
}
