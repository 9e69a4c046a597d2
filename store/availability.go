package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

// The availability controller's queries: what it fenced, what it still
// has to move, and what it could not fence.

// RecordFencedPower writes power off on host id, as its BMC confirmed it
// to the controller that fenced it (the poll would say so a moment
// later; a fenced evacuation checks it now).
func RecordFencedPower(ctx context.Context, q Querier, id string) error {
	tag, err := q.Exec(ctx, `UPDATE hosts SET power = 'off' WHERE id = $1::uuid`, uuidArg(id))
	if err != nil {
		return MapError(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("host %s: %w", id, rackcloud.ErrNotFound)
	}
	return nil
}

// FencedHosts lists the hosts failed with reason fenced.
func FencedHosts(ctx context.Context, q Querier) ([]rackcloud.Host, error) {
	rows, err := q.Query(ctx, `SELECT `+hostCols+` FROM hosts h WHERE h.state = 'failed' AND h.failure_reason = 'fenced' ORDER BY h.name`)
	if err != nil {
		return nil, MapError(err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (rackcloud.Host, error) { return scanHost(r) })
}

// Evacuations is what became of the fenced evacuations of a host since a
// moment (its fence).
type Evacuations struct {
	// Tries counts host.evacuate tasks on the host since then.
	Tries int
	// Active is one is pending or running.
	Active bool
	// LastEnded is when the last one ended (zero when none did).
	LastEnded time.Time
}

// EvacuationsSince reads the host.evacuate tasks of host id created at or
// after since.
func EvacuationsSince(ctx context.Context, q Querier, id string, since time.Time) (Evacuations, error) {
	var e Evacuations
	var last *time.Time
	err := q.QueryRow(ctx, `SELECT count(*), COALESCE(bool_or(state IN ('pending', 'running', 'canceling')), false), max(finished_at)
		FROM tasks WHERE kind = $1 AND target = $2 AND created_at >= $3`,
		rackcloud.KindHostEvacuate, "host/"+id+"/evacuate", since).Scan(&e.Tries, &e.Active, &last)
	if err != nil {
		return e, MapError(err)
	}
	if last != nil {
		e.LastEnded = *last
	}
	return e, nil
}

// TaskCreated returns when task id was created.
func TaskCreated(ctx context.Context, q Querier, id string) (time.Time, error) {
	var at time.Time
	if !ValidID(id) {
		return at, fmt.Errorf("task %q: %w", id, rackcloud.ErrNotFound)
	}
	err := q.QueryRow(ctx, `SELECT created_at FROM tasks WHERE id = $1::uuid`, id).Scan(&at)
	return at, MapError(err)
}

// Unfenced is a host the controller tried to fence and could not.
type Unfenced struct {
	HostID, Host string
	// Error is the failed host.fence task's error.
	Error string
}

// UnfencedHosts lists the hosts whose last host.fence task failed and
// that are not failed (fenced) since: a host that may still run its
// guests, which nothing restarted.
func UnfencedHosts(ctx context.Context, q Querier) ([]Unfenced, error) {
	rows, err := q.Query(ctx, `SELECT h.id::text, h.name, t.error FROM hosts h
		JOIN LATERAL (SELECT state, error FROM tasks WHERE kind = $1 AND target = 'host/' || h.id::text
			ORDER BY created_at DESC LIMIT 1) t ON true
		WHERE t.state = 'failed' AND h.state <> 'failed' ORDER BY h.name`, rackcloud.KindHostFence)
	if err != nil {
		return nil, MapError(err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Unfenced, error) {
		var u Unfenced
		return u, r.Scan(&u.HostID, &u.Host, &u.Error)
	})
}

// GetHostByName returns the host named name (alerts name hosts by name).
func GetHostByName(ctx context.Context, q Querier, name string) (rackcloud.Host, error) {
	h, err := scanHost(q.QueryRow(ctx, `SELECT `+hostCols+` FROM hosts h WHERE h.name = $1`, name))
	if err != nil {
		return h, fmt.Errorf("host %q: %w", name, err)
	}
	return h, nil
}
