package store

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

const zoneCols = `id::text, region_id::text, name, labels, COALESCE(overcommit_cpu, 0), COALESCE(overcommit_memory, 0),
	COALESCE(overcommit_disk, 0), version, created_at, updated_at`

func scanZone(row pgx.Row) (rackcloud.Zone, error) {
	var z rackcloud.Zone
	err := row.Scan(&z.ID, &z.RegionID, &z.Name, &z.Labels, &z.Overcommit.CPU, &z.Overcommit.Memory, &z.Overcommit.Disk,
		&z.Version, &z.CreatedAt, &z.UpdatedAt)
	return z, MapError(err)
}

// CreateZone inserts z (a 0 overcommit ratio is stored as none); an unknown region is rackcloud.ErrConflict (a
// foreign key) or rackcloud.ErrInvalid (a malformed ID).
func CreateZone(ctx context.Context, q Querier, z rackcloud.Zone) (rackcloud.Zone, error) {
	return scanZone(q.QueryRow(ctx, `INSERT INTO zones (region_id, name, labels, overcommit_cpu, overcommit_memory, overcommit_disk)
		VALUES ($1, $2, $3, NULLIF($4::float8, 0), NULLIF($5::float8, 0), NULLIF($6::float8, 0)) RETURNING `+zoneCols,
		z.RegionID, z.Name, labelsOrEmpty(z.Labels), z.Overcommit.CPU, z.Overcommit.Memory, z.Overcommit.Disk))
}

// GetZone returns the zone with id, or rackcloud.ErrNotFound.
func GetZone(ctx context.Context, q Querier, id string) (rackcloud.Zone, error) {
	if !ValidID(id) {
		return rackcloud.Zone{}, rackcloud.ErrNotFound
	}
	return scanZone(q.QueryRow(ctx, `SELECT `+zoneCols+` FROM zones WHERE id = $1`, id))
}

// ListZones lists zones in (name, id) order; Filter.Parent is a region.
func ListZones(ctx context.Context, q Querier, f Filter) ([]rackcloud.Zone, error) {
	return listRows(ctx, q, listSpec{table: "zones", cols: zoneCols, parentCol: "region_id"}, f, scanZone)
}

// UpdateZone writes z's labels and overcommit ratios if its version is
// still z.Version; the zone's hosts that inherit a ratio are re-judged by
// the database (trigger zones_usage_caps).
func UpdateZone(ctx context.Context, q Querier, z rackcloud.Zone) (rackcloud.Zone, error) {
	out, err := scanZone(q.QueryRow(ctx, `UPDATE zones SET labels = $3, overcommit_cpu = NULLIF($4::float8, 0),
		overcommit_memory = NULLIF($5::float8, 0), overcommit_disk = NULLIF($6::float8, 0), version = version + 1, updated_at = now()
		WHERE id = $1 AND version = $2 RETURNING `+zoneCols, z.ID, z.Version, labelsOrEmpty(z.Labels),
		z.Overcommit.CPU, z.Overcommit.Memory, z.Overcommit.Disk))
	if err != nil {
		return out, versionError(ctx, q, "zones", z.ID, err)
	}
	return out, nil
}

// DeleteZone deletes a zone that has no racks (else rackcloud.ErrConflict).
func DeleteZone(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "zones", id, version)
}

const rackCols = `id::text, zone_id::text, name, positions, labels, version, created_at, updated_at`

func scanRack(row pgx.Row) (rackcloud.Rack, error) {
	var r rackcloud.Rack
	err := row.Scan(&r.ID, &r.ZoneID, &r.Name, &r.Positions, &r.Labels, &r.Version, &r.CreatedAt, &r.UpdatedAt)
	return r, MapError(err)
}

// CreateRack inserts r.
func CreateRack(ctx context.Context, q Querier, r rackcloud.Rack) (rackcloud.Rack, error) {
	return scanRack(q.QueryRow(ctx, `INSERT INTO racks (zone_id, name, positions, labels) VALUES ($1, $2, $3, $4) RETURNING `+rackCols,
		r.ZoneID, r.Name, r.Positions, labelsOrEmpty(r.Labels)))
}

// GetRack returns the rack with id, or rackcloud.ErrNotFound.
func GetRack(ctx context.Context, q Querier, id string) (rackcloud.Rack, error) {
	if !ValidID(id) {
		return rackcloud.Rack{}, rackcloud.ErrNotFound
	}
	return scanRack(q.QueryRow(ctx, `SELECT `+rackCols+` FROM racks WHERE id = $1`, id))
}

// ListRacks lists racks; Filter.Parent is a zone.
func ListRacks(ctx context.Context, q Querier, f Filter) ([]rackcloud.Rack, error) {
	return listRows(ctx, q, listSpec{table: "racks", cols: rackCols, parentCol: "zone_id"}, f, scanRack)
}

// UpdateRack writes r's positions and labels if its version is still
// r.Version.
func UpdateRack(ctx context.Context, q Querier, r rackcloud.Rack) (rackcloud.Rack, error) {
	out, err := scanRack(q.QueryRow(ctx, `UPDATE racks SET positions = $3, labels = $4, version = version + 1, updated_at = now()
		WHERE id = $1 AND version = $2 RETURNING `+rackCols, r.ID, r.Version, r.Positions, labelsOrEmpty(r.Labels)))
	if err != nil {
		return out, versionError(ctx, q, "racks", r.ID, err)
	}
	return out, nil
}

// DeleteRack deletes a rack that holds no hosts.
func DeleteRack(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "racks", id, version)
}
