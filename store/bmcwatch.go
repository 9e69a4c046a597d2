package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rackcloud/rackcloud"
)

// BMCTarget is what a host's BMC is polled with.
type BMCTarget struct {
	HostID   string
	Address  string
	Protocol rackcloud.BMCProtocol
	Username string
	// Sealed is the sealed password: open it with the server's Sealer and
	// the host's ID as additional data.
	Sealed string
	// Generation counts the changes to the host's BMC address, protocol,
	// user name and password (a trigger keeps it). An observation made
	// with these credentials is recorded only while it is unchanged.
	Generation int64
}

// ListBMCTargets returns the hosts that have a BMC with a password, with
// their credentials generation.
func ListBMCTargets(ctx context.Context, q Querier) ([]BMCTarget, error) {
	rows, err := q.Query(ctx, `SELECT id::text, bmc_address, bmc_protocol, bmc_username, bmc_password_sealed, bmc_generation
		FROM hosts WHERE bmc_address IS NOT NULL AND bmc_password_sealed <> '' ORDER BY id`)
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	var ts []BMCTarget
	for rows.Next() {
		var t BMCTarget
		if err := rows.Scan(&t.HostID, &t.Address, &t.Protocol, &t.Username, &t.Sealed, &t.Generation); err != nil {
			return nil, MapError(err)
		}
		ts = append(ts, t)
	}
	return ts, MapError(rows.Err())
}

// BMCObservation is what one poll of a host's BMC found, with the
// credentials of Generation.
type BMCObservation struct {
	HostID     string
	Generation int64
	Power      rackcloud.PowerState
	Healthy    bool
	// Error is the short reason while unhealthy ("" when healthy).
	Error string
}

// ErrBMCChanged is returned by RecordBMCObservation when the host's BMC
// address or credentials changed after the poll began (or the host is
// gone): the observation is stale and was not recorded.
var ErrBMCChanged = errors.New("the host's BMC changed since the poll began")

// RecordBMCObservation writes o's power and BMC health on its host, in one
// statement that also checks that the host's credentials generation is
// still o.Generation (else ErrBMCChanged and nothing is written). It
// reports whether anything changed. Observed facts are not edits: the
// host's version (its ETag) and updated_at are left alone, so that a power
// change never makes an operator's If-Match stale.
func RecordBMCObservation(ctx context.Context, q Querier, o BMCObservation) (changed bool, err error) {
	if !ValidID(o.HostID) {
		return false, ErrBMCChanged
	}
	var current bool
	err = q.QueryRow(ctx, `WITH cur AS (
			SELECT id FROM hosts WHERE id = $1::uuid AND bmc_generation = $2 FOR UPDATE
		), upd AS (
			UPDATE hosts h SET power = $3, bmc_healthy = $4, bmc_error = $5
			FROM cur WHERE h.id = cur.id AND h.bmc_generation = $2
				AND (h.power <> $3 OR h.bmc_healthy <> $4 OR h.bmc_error <> $5)
			RETURNING h.id
		)
		SELECT EXISTS (SELECT 1 FROM cur), EXISTS (SELECT 1 FROM upd)`,
		o.HostID, o.Generation, string(o.Power), o.Healthy, o.Error).Scan(&current, &changed)
	if err != nil {
		return false, MapError(err)
	}
	if !current {
		return false, ErrBMCChanged
	}
	return changed, nil
}

// bmcChannel is the channel the hosts_bmc_generation trigger notifies
// with a host's ID when its BMC address or credentials change.
const bmcChannel = "rackcloud_bmc_changed"

// Listener receives the payloads notified on one channel (committed
// changes only), on a connection of its own.
type Listener struct {
	conn *pgxpool.Conn
}

// BMCListener receives the IDs of hosts whose BMC address or credentials
// changed.
type BMCListener = Listener

// ListenBMCChanges starts listening for BMC changes: every change
// committed after it returns is delivered by Next. Close it when done.
func ListenBMCChanges(ctx context.Context, pool *pgxpool.Pool) (*BMCListener, error) {
	return Listen(ctx, pool, bmcChannel)
}

// Listen starts listening on channel: every notification committed after
// it returns is delivered by Next. Close it when done.
func Listen(ctx context.Context, pool *pgxpool.Pool, channel string) (*Listener, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{channel}.Sanitize()); err != nil {
		conn.Release()
		return nil, err
	}
	return &Listener{conn: conn}, nil
}

// Next waits for the next notification and returns its payload. It
// returns ctx's error when ctx ends first (the listener stays usable), and
// any other error when the connection is lost.
func (l *Listener) Next(ctx context.Context) (string, error) {
	n, err := l.conn.Conn().WaitForNotification(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", err
	}
	return n.Payload, nil
}

// Close stops listening. The connection is closed rather than returned to
// the pool, which must never hand out a listening connection.
func (l *Listener) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.conn.Conn().Close(ctx)
	l.conn.Release()
}

// WithLeaderLock runs fn while this process holds the PostgreSQL advisory
// lock key, for singletons among replicas (one BMC poller, one
// availability controller). The lock is taken with pg_try_advisory_lock on
// a connection of its own, held for the whole of fn: when another session
// holds it, WithLeaderLock returns (false, nil) at once without calling
// fn. While fn runs, the connection is pinged every check; if it is lost
// (and the lock with it), fn's context is cancelled with a cause saying
// so, WithLeaderLock waits for fn and returns (true, that error). Otherwise
// it returns (true, fn's error). The lock is released when fn returns; a
// connection that cannot release it is closed, never returned to the pool.
func WithLeaderLock(ctx context.Context, pool *pgxpool.Pool, key int64, check time.Duration,
	fn func(ctx context.Context) error) (held bool, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		conn.Release()
		return false, err
	}
	if !got {
		conn.Release()
		return false, nil
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var released bool
		if err := conn.QueryRow(uctx, `SELECT pg_advisory_unlock($1)`, key).Scan(&released); err != nil || !released {
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}()

	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- fn(fctx) }()
	tick := time.NewTicker(check)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return true, err
		case <-tick.C:
			pctx, pcancel := context.WithTimeout(ctx, check)
			perr := conn.Ping(pctx)
			pcancel()
			if perr != nil && ctx.Err() == nil {
				lost := fmt.Errorf("the leader lock's connection is lost: %w", perr)
				cancel(lost)
				<-done
				return true, lost
			}
		}
	}
}

// RunAsLeader runs lead whenever this process holds the advisory lock key
// (WithLeaderLock, its connection checked every interval) and stands by
// otherwise, trying again every interval, until ctx ends. onErr, when
// set, hears why a term ended or the lock could not be tried.
func RunAsLeader(ctx context.Context, pool *pgxpool.Pool, key int64, interval time.Duration,
	lead func(ctx context.Context) error, onErr func(error)) {
	for {
		_, err := WithLeaderLock(ctx, pool, key, interval, lead)
		if ctx.Err() != nil {
			return
		}
		if err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
