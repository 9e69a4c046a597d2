package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

const guestCols = `id::text, project_id::text, name, kind, vcpu, memory_mib, disk_gib, image_id::text,
	COALESCE(zone_id::text, ''), selector, COALESCE(placement_group_id::text, ''), ha, state,
	COALESCE(host_id::text, ''), handle, labels, version, created_at, updated_at,
	COALESCE(rack_id::text, ''), COALESCE(want_host_id::text, ''), constraints, strategy, state_reason, placement,
	observed_state, observed_detail, observed_at`

func scanGuest(row pgx.Row) (rackcloud.Guest, error) {
	var g rackcloud.Guest
	var obsState, obsDetail string
	var obsAt *time.Time
	err := row.Scan(&g.ID, &g.ProjectID, &g.Name, &g.Kind, &g.Flavor.CPUCores, &g.Flavor.MemoryMiB, &g.Flavor.DiskGiB,
		&g.ImageID, &g.ZoneID, &g.Selector, &g.PlacementGroupID, &g.HA, &g.State, &g.HostID, &g.Handle, &g.Labels,
		&g.Version, &g.CreatedAt, &g.UpdatedAt, &g.RackID, &g.WantHostID, &g.Constraints, &g.Strategy, &g.StateReason,
		&g.Placement, &obsState, &obsDetail, &obsAt)
	if err == nil && obsAt != nil {
		g.Observed = &rackcloud.GuestObserved{State: obsState, Detail: obsDetail, At: *obsAt}
	}
	if len(g.Constraints) == 0 {
		g.Constraints = nil
	}
	return g, MapError(err)
}

// CreateGuest inserts g, which uses its project's quota at once: a guest
// the quota cannot hold is ErrQuotaExceeded. The insert locks the
// project's quota row until the transaction ends, so callers do it last.
// g.ID may be set (see NewID); empty makes one.
func CreateGuest(ctx context.Context, q Querier, g rackcloud.Guest) (rackcloud.Guest, error) {
	if g.ID == "" {
		g.ID = NewID()
	}
	if g.State == "" {
		g.State = rackcloud.GuestPending
	}
	if g.HA == "" {
		g.HA = rackcloud.HANone
	}
	if g.Strategy == "" {
		g.Strategy = rackcloud.Binpack
	}
	if g.Constraints == nil {
		g.Constraints = []string{}
	}
	return scanGuest(q.QueryRow(ctx, `INSERT INTO guests (id, project_id, name, kind, vcpu, memory_mib, disk_gib, image_id,
		zone_id, selector, placement_group_id, ha, state, labels, rack_id, want_host_id, constraints, strategy)
		VALUES ($14, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $15, $16, $17, $18) RETURNING `+guestCols,
		g.ProjectID, g.Name, string(g.Kind), g.Flavor.CPUCores, g.Flavor.MemoryMiB, g.Flavor.DiskGiB, g.ImageID,
		nullable(g.ZoneID), labelsOrEmpty(g.Selector), nullable(g.PlacementGroupID), string(g.HA), string(g.State),
		labelsOrEmpty(g.Labels), g.ID, nullable(g.RackID), nullable(g.WantHostID), g.Constraints, string(g.Strategy)))
}

// NewID returns a random (version 4) UUID, for rows whose ID is needed
// before they are written.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// GetGuest returns the guest with id, or rackcloud.ErrNotFound.
func GetGuest(ctx context.Context, q Querier, id string) (rackcloud.Guest, error) {
	if !ValidID(id) {
		return rackcloud.Guest{}, rackcloud.ErrNotFound
	}
	return scanGuest(q.QueryRow(ctx, `SELECT `+guestCols+` FROM guests WHERE id = $1`, id))
}

// ListGuests lists guests; Filter.Parent is a project, Filter.State a
// guest state, Filter.Projects the projects the caller may see.
func ListGuests(ctx context.Context, q Querier, f Filter) ([]rackcloud.Guest, error) {
	return listRows(ctx, q, listSpec{table: "guests", cols: guestCols, stateCol: "state", parentCol: "project_id",
		projectCol: "project_id"}, f, scanGuest)
}

// UpdateGuest writes g's HA policy, state, host, handle and labels if its
// version is still g.Version.
func UpdateGuest(ctx context.Context, q Querier, g rackcloud.Guest) (rackcloud.Guest, error) {
	out, err := scanGuest(q.QueryRow(ctx, `UPDATE guests SET ha = $3, state = $4, host_id = $5, handle = $6, labels = $7,
		version = version + 1, updated_at = now() WHERE id = $1::uuid AND version = $2 RETURNING `+guestCols,
		uuidArg(g.ID), g.Version, string(g.HA), string(g.State), nullable(g.HostID), g.Handle, labelsOrEmpty(g.Labels)))
	if err != nil {
		return out, versionError(ctx, q, "guests", g.ID, err)
	}
	return out, nil
}

// DeleteGuest deletes a guest's row, giving its resources back to its
// project's quota.
func DeleteGuest(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "guests", id, version)
}

const pgCols = `id::text, project_id::text, name, policy, hard, scope, labels, version, created_at, updated_at,
	max_per_scope, weight`

func scanPlacementGroup(row pgx.Row) (rackcloud.PlacementGroup, error) {
	var p rackcloud.PlacementGroup
	err := row.Scan(&p.ID, &p.ProjectID, &p.Name, &p.Policy, &p.Hard, &p.Scope, &p.Labels, &p.Version, &p.CreatedAt, &p.UpdatedAt,
		&p.MaxPerScope, &p.Weight)
	return p, MapError(err)
}

// CreatePlacementGroup inserts p.
func CreatePlacementGroup(ctx context.Context, q Querier, p rackcloud.PlacementGroup) (rackcloud.PlacementGroup, error) {
	if p.MaxPerScope == 0 {
		p.MaxPerScope = 1
	}
	if p.Weight == 0 {
		p.Weight = 1
	}
	return scanPlacementGroup(q.QueryRow(ctx, `INSERT INTO placement_groups (project_id, name, policy, hard, scope, labels,
		max_per_scope, weight) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+pgCols,
		p.ProjectID, p.Name, string(p.Policy), p.Hard, string(p.Scope), labelsOrEmpty(p.Labels), p.MaxPerScope, p.Weight))
}

// GetPlacementGroup returns the group with id, or rackcloud.ErrNotFound.
func GetPlacementGroup(ctx context.Context, q Querier, id string) (rackcloud.PlacementGroup, error) {
	if !ValidID(id) {
		return rackcloud.PlacementGroup{}, rackcloud.ErrNotFound
	}
	return scanPlacementGroup(q.QueryRow(ctx, `SELECT `+pgCols+` FROM placement_groups WHERE id = $1`, id))
}

// ListPlacementGroups lists placement groups; Filter.Parent is a project.
func ListPlacementGroups(ctx context.Context, q Querier, f Filter) ([]rackcloud.PlacementGroup, error) {
	return listRows(ctx, q, listSpec{table: "placement_groups", cols: pgCols, parentCol: "project_id",
		projectCol: "project_id"}, f, scanPlacementGroup)
}

// UpdatePlacementGroup writes p's labels if its version is still
// p.Version (policy, hardness and scope are fixed at creation).
func UpdatePlacementGroup(ctx context.Context, q Querier, p rackcloud.PlacementGroup) (rackcloud.PlacementGroup, error) {
	out, err := scanPlacementGroup(q.QueryRow(ctx, `UPDATE placement_groups SET labels = $3, version = version + 1,
		updated_at = now() WHERE id = $1::uuid AND version = $2 RETURNING `+pgCols, uuidArg(p.ID), p.Version, labelsOrEmpty(p.Labels)))
	if err != nil {
		return out, versionError(ctx, q, "placement_groups", p.ID, err)
	}
	return out, nil
}

// DeletePlacementGroup deletes a group no guest is in.
func DeletePlacementGroup(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "placement_groups", id, version)
}

// CountGuestsOnHost counts the guests placed on a host.
func CountGuestsOnHost(ctx context.Context, q Querier, hostID string) (int, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM guests WHERE host_id = $1::uuid`, uuidArg(hostID)).Scan(&n)
	return n, MapError(err)
}
