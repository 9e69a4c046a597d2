package store

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

// GuestsOnHost returns the guests placed on host hostID, in ID order
// (what an evacuation has to move).
func GuestsOnHost(ctx context.Context, q Querier, hostID string) ([]rackcloud.Guest, error) {
	rows, err := q.Query(ctx, `SELECT `+guestCols+` FROM guests WHERE host_id = $1::uuid ORDER BY id`, uuidArg(hostID))
	if err != nil {
		return nil, MapError(err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (rackcloud.Guest, error) { return scanGuest(r) })
}
