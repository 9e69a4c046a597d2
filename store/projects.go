package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rackcloud/rackcloud"
)

// ErrQuotaExceeded is returned when a change would make a project use more
// than its quota reserves. It is a rackcloud.ErrConflict.
var ErrQuotaExceeded = fmt.Errorf("%w: quota exceeded", rackcloud.ErrConflict)

// quotaError maps the quota checks of 0200_api.sql (constraints named
// quota_exceeded_<resource>) to ErrQuotaExceeded; MapError calls it.
func quotaError(pe *pgconn.PgError) error {
	if pe.Code == "23514" && strings.HasPrefix(pe.ConstraintName, "quota_exceeded_") {
		return fmt.Errorf("%w: not enough %s left in the project's quota", ErrQuotaExceeded,
			strings.TrimPrefix(pe.ConstraintName, "quota_exceeded_"))
	}
	return nil
}

const projectCols = `id::text, name, description, labels, version, created_at, updated_at`

func scanProject(row pgx.Row) (rackcloud.Project, error) {
	var p rackcloud.Project
	err := row.Scan(&p.ID, &p.Name, &p.Description, &p.Labels, &p.Version, &p.CreatedAt, &p.UpdatedAt)
	return p, MapError(err)
}

// CreateProject inserts p and its (empty) quota.
func CreateProject(ctx context.Context, q Querier, p rackcloud.Project) (rackcloud.Project, error) {
	return scanProject(q.QueryRow(ctx, `INSERT INTO projects (name, description, labels) VALUES ($1, $2, $3) RETURNING `+projectCols,
		p.Name, p.Description, labelsOrEmpty(p.Labels)))
}

// GetProject returns the project with id, or rackcloud.ErrNotFound.
func GetProject(ctx context.Context, q Querier, id string) (rackcloud.Project, error) {
	if !ValidID(id) {
		return rackcloud.Project{}, rackcloud.ErrNotFound
	}
	return scanProject(q.QueryRow(ctx, `SELECT `+projectCols+` FROM projects WHERE id = $1`, id))
}

// ListProjects lists projects; Filter.Projects restricts by ID.
func ListProjects(ctx context.Context, q Querier, f Filter) ([]rackcloud.Project, error) {
	return listRows(ctx, q, listSpec{table: "projects", cols: projectCols, projectCol: "id"}, f, scanProject)
}

// UpdateProject writes p's description and labels if its version is still
// p.Version.
func UpdateProject(ctx context.Context, q Querier, p rackcloud.Project) (rackcloud.Project, error) {
	out, err := scanProject(q.QueryRow(ctx, `UPDATE projects SET description = $3, labels = $4, version = version + 1,
		updated_at = now() WHERE id = $1::uuid AND version = $2 RETURNING `+projectCols,
		uuidArg(p.ID), p.Version, p.Description, labelsOrEmpty(p.Labels)))
	if err != nil {
		return out, versionError(ctx, q, "projects", p.ID, err)
	}
	return out, nil
}

// DeleteProject deletes a project that owns no guests or placement groups.
func DeleteProject(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "projects", id, version)
}

// QuotaRecord is a project's quota with its row version.
type QuotaRecord struct {
	rackcloud.Quota
	Version   int64
	UpdatedAt time.Time
}

const quotaCols = `project_id::text, reserved_vcpu, reserved_memory_mib, reserved_disk_gib, reserved_hosts,
	used_vcpu, used_memory_mib, used_disk_gib, used_hosts, version, updated_at`

func scanQuota(row pgx.Row) (QuotaRecord, error) {
	var r QuotaRecord
	err := row.Scan(&r.ProjectID, &r.Reserved.CPUCores, &r.Reserved.MemoryMiB, &r.Reserved.DiskGiB, &r.Hosts,
		&r.Used.CPUCores, &r.Used.MemoryMiB, &r.Used.DiskGiB, &r.UsedHosts, &r.Version, &r.UpdatedAt)
	return r, MapError(err)
}

// GetQuota returns a project's quota, or rackcloud.ErrNotFound.
func GetQuota(ctx context.Context, q Querier, projectID string) (QuotaRecord, error) {
	if !ValidID(projectID) {
		return QuotaRecord{}, rackcloud.ErrNotFound
	}
	return scanQuota(q.QueryRow(ctx, `SELECT `+quotaCols+` FROM quotas WHERE project_id = $1`, projectID))
}

// SetQuota sets what is reserved for a project if the quota's version is
// still version (0: any). Reserving less than is used is
// ErrQuotaExceeded.
func SetQuota(ctx context.Context, q Querier, projectID string, version int64, reserved rackcloud.Resources, hosts int) (QuotaRecord, error) {
	out, err := scanQuota(q.QueryRow(ctx, `UPDATE quotas SET reserved_vcpu = $3, reserved_memory_mib = $4,
		reserved_disk_gib = $5, reserved_hosts = $6, version = version + 1, updated_at = now()
		WHERE project_id = $1::uuid AND ($2 = 0 OR version = $2) RETURNING `+quotaCols,
		uuidArg(projectID), version, reserved.CPUCores, reserved.MemoryMiB, reserved.DiskGiB, hosts))
	if err == nil {
		return out, nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if qerr := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM quotas WHERE project_id = $1::uuid)`, uuidArg(projectID)).Scan(&exists); qerr != nil {
			return out, MapError(qerr)
		}
		if exists {
			return out, fmt.Errorf("%w: quota of project %s was changed by someone else", ErrStaleVersion, projectID)
		}
		return out, fmt.Errorf("%w: project %s", rackcloud.ErrNotFound, projectID)
	}
	return out, err
}
