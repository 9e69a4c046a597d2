package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

const regionCols = `id::text, name, description, labels, version, created_at, updated_at`

func scanRegion(row pgx.Row) (rackcloud.Region, error) {
	var r rackcloud.Region
	err := row.Scan(&r.ID, &r.Name, &r.Description, &r.Labels, &r.Version, &r.CreatedAt, &r.UpdatedAt)
	return r, MapError(err)
}

// CreateRegion inserts r and returns it as stored.
func CreateRegion(ctx context.Context, q Querier, r rackcloud.Region) (rackcloud.Region, error) {
	if r.Labels == nil {
		r.Labels = rackcloud.Labels{}
	}
	return scanRegion(q.QueryRow(ctx, `INSERT INTO regions (name, description, labels)
		VALUES ($1, $2, $3) RETURNING `+regionCols, r.Name, r.Description, r.Labels))
}

// GetRegion returns the region with id, or rackcloud.ErrNotFound.
func GetRegion(ctx context.Context, q Querier, id string) (rackcloud.Region, error) {
	if !ValidID(id) {
		return rackcloud.Region{}, rackcloud.ErrNotFound
	}
	return scanRegion(q.QueryRow(ctx, `SELECT `+regionCols+` FROM regions WHERE id = $1`, id))
}

// ListRegions returns up to limit regions with names after the cursor
// `after`, in name order (keyset pagination).
func ListRegions(ctx context.Context, q Querier, after string, limit int) ([]rackcloud.Region, error) {
	rows, err := q.Query(ctx, `SELECT `+regionCols+` FROM regions WHERE name > $1 ORDER BY name LIMIT $2`, after, limit)
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	var out []rackcloud.Region
	for rows.Next() {
		r, err := scanRegion(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, MapError(rows.Err())
}

// UpdateRegion writes r's mutable fields if its version is still
// r.Version: rackcloud.ErrNotFound when it is gone, rackcloud.ErrConflict
// when another change got there first.
func UpdateRegion(ctx context.Context, q Querier, r rackcloud.Region) (rackcloud.Region, error) {
	if r.Labels == nil {
		r.Labels = rackcloud.Labels{}
	}
	out, err := scanRegion(q.QueryRow(ctx, `UPDATE regions SET description = $3, labels = $4,
		version = version + 1, updated_at = now() WHERE id = $1::uuid AND version = $2 RETURNING `+regionCols,
		uuidArg(r.ID), r.Version, r.Description, r.Labels))
	if err == nil {
		return out, nil
	}
	return out, versionError(ctx, q, "regions", r.ID, err)
}

// DeleteRegion deletes the region if its version is still version (0 means
// any version).
func DeleteRegion(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "regions", id, version)
}

// versionError tells a missing row from a stale version after an update or
// delete matched nothing.
func versionError(ctx context.Context, q Querier, table, id string, err error) error {
	if !errors.Is(err, pgx.ErrNoRows) {
		return MapError(err)
	}
	var exists bool
	if qerr := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE id = $1::uuid)`, uuidArg(id)).Scan(&exists); qerr != nil {
		return MapError(qerr)
	}
	if exists {
		return fmt.Errorf("%w: %s %s was changed by someone else", ErrStaleVersion, table, id)
	}
	return fmt.Errorf("%w: %s %s", rackcloud.ErrNotFound, table, id)
}

// ListRegionsFiltered lists regions in (name, id) order with a Filter.
func ListRegionsFiltered(ctx context.Context, q Querier, f Filter) ([]rackcloud.Region, error) {
	return listRows(ctx, q, listSpec{table: "regions", cols: regionCols}, f, scanRegion)
}
