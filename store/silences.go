package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// MaintenanceHost is a host in state maintenance: Alertmanager silences
// the alerts about it (alerts.Silencer).
type MaintenanceHost struct {
	Name string
	// Reason is the host's state reason, empty when none was given.
	Reason string
}

// ListMaintenanceHosts returns every host in state maintenance, in name
// order (all of them, not a page: the silencer compares whole sets).
func ListMaintenanceHosts(ctx context.Context, q Querier) ([]MaintenanceHost, error) {
	rows, err := q.Query(ctx, `SELECT name, state_reason FROM hosts WHERE state = 'maintenance' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (MaintenanceHost, error) {
		var h MaintenanceHost
		err := r.Scan(&h.Name, &h.Reason)
		return h, err
	})
}
