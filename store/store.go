// Package store is rackcloud's state on PostgreSQL (pgx/v5): the pool,
// embedded numbered migrations, one transaction per change, and the mapping
// of Postgres errors to rackcloud.ErrNotFound and rackcloud.ErrConflict.
// Mutable rows carry a version column for optimistic updates. The queries of
// each resource live in one file of this package (regions.go, ...).
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rackcloud/rackcloud"
)

// DefaultMaxConns is the pool size when the URL does not set pool_max_conns.
const DefaultMaxConns = 20

// DefaultConnectTimeout bounds a new connection when the URL does not set
// connect_timeout.
const DefaultConnectTimeout = 5 * time.Second

// Store is the database handle shared by the server's packages.
type Store struct {
	Pool *pgxpool.Pool
}

// ErrStaleVersion is returned by optimistic updates and deletes when the
// row's version moved since it was read. It is a rackcloud.ErrConflict.
var ErrStaleVersion = fmt.Errorf("%w: stale version", rackcloud.ErrConflict)

// NewPool parses url and returns a pool. It does not connect: a database
// that is down is reported by Ping, Migrate and queries, so the server can
// start and say why it is not ready. A malformed URL is an error naming the
// problem but never the password.
func NewPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	if !strings.Contains(url, "connect_timeout") {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// Redact returns the URL with any password replaced by "xxxxx".
func Redact(url string) string {
	at := strings.LastIndex(url, "@")
	scheme := strings.Index(url, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return url
	}
	userinfo := url[scheme+3 : at]
	if i := strings.Index(userinfo, ":"); i >= 0 {
		return url[:scheme+3] + userinfo[:i] + ":xxxxx" + url[at:]
	}
	return url
}

// Querier is what queries need: a pool or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	_ Querier = (*pgxpool.Pool)(nil)
	_ Querier = (pgx.Tx)(nil)
)

// InTx runs fn in one transaction and commits when fn returns nil; any
// error rolls everything back. Errors are passed through MapError.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return MapError(pgx.BeginFunc(ctx, pool, fn))
}

// MapError maps database errors to the shared sentinels: no rows ->
// rackcloud.ErrNotFound; unique, exclusion and foreign-key violations ->
// rackcloud.ErrConflict; check and invalid-text violations ->
// rackcloud.ErrInvalid. The original error stays in the chain.
func MapError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return errors.Join(rackcloud.ErrNotFound, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if qe := quotaError(pe); qe != nil {
			return qe
		}
		if ce := claimError(pe); ce != nil {
			return ce
		}
		switch pe.Code {
		case "23505", "23P01": // unique_violation, exclusion_violation
			return fmt.Errorf("%w: %s", rackcloud.ErrConflict, constraintMessage(pe))
		case "23503": // foreign_key_violation
			return fmt.Errorf("%w: %s", rackcloud.ErrConflict, constraintMessage(pe))
		case "23514", "22P02", "23502": // check, invalid_text_representation, not_null
			return fmt.Errorf("%w: %s", rackcloud.ErrInvalid, pe.Message)
		}
	}
	return err
}

func constraintMessage(pe *pgconn.PgError) string {
	if pe.Detail != "" {
		return pe.Detail
	}
	return pe.Message
}

func isNotFound(err error) bool { return errors.Is(err, rackcloud.ErrNotFound) }
