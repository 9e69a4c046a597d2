package store

import (
	"context"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ApplyForTest applies arbitrary migrations (for failure tests).
func ApplyForTest(ctx context.Context, pool *pgxpool.Pool, ms []Migration) ([]int, error) {
	return apply(ctx, pool, ms)
}

// LoadForTest loads migrations from fsys.
func LoadForTest(fsys fs.FS) ([]Migration, error) { return loadMigrations(fsys) }
