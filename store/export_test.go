package store

import (
	"context"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ApplyForTest applies arbitrary migrations (for failure tests).
func ApplyForTest(ctx context.Context, pool *pgxpool.Pool, ms []Migration) ([]int, error) {
	return apply(ctx, pool, ms)
}

// LoadForTest loads migrations from fsys.
func LoadForTest(fsys fs.FS) ([]Migration, error) { return loadMigrations(fsys) }

// SetSealerReloadEvery changes how often a Sealer re-reads its key file
// (tests make it 0) and returns a function that restores it.
func SetSealerReloadEvery(d time.Duration) func() {
	old := reloadEvery
	reloadEvery = d
	return func() { reloadEvery = old }
}
