package tasks

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rackcloud/rackcloud/store"
)

// retryTransient runs f again after deadlocks, serialization failures and
// connection errors that did not reach the server, with a short backoff,
// until ctx ends or 6 tries.
func retryTransient(ctx context.Context, f func() error) error {
	delay := 20 * time.Millisecond
	for try := 1; ; try++ {
		err := f()
		if err == nil || try >= 6 || !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay *= 2
	}
}

func transient(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40P01", "40001": // deadlock_detected, serialization_failure
			return true
		}
		return false
	}
	return pgconn.SafeToRetry(err)
}

// retryStatement runs exec in db with retryTransient, for a statement
// that may deadlock with workers writing the same tasks: as its own
// statement on a pool, under a savepoint in a transaction, since a
// deadlock aborts the savepoint, not the caller's transaction, so the
// retry can go on in it.
func retryStatement(ctx context.Context, db store.Querier, exec func(store.Querier) error) error {
	return retryTransient(ctx, func() error {
		if tx, ok := db.(pgx.Tx); ok {
			return pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { return exec(sp) })
		}
		return exec(db) // one statement: its own transaction
	})
}

func mapErr(err error) error { return store.MapError(err) }
