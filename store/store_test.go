package store_test

import (
	"context"
	"errors"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestRegionsCRUDAndVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)

	r, err := store.CreateRegion(ctx, pool, rackcloud.Region{Meta: rackcloud.Meta{Name: "eu-west", Labels: rackcloud.Labels{"tier": "gold"}}})
	require.NoError(t, err)
	require.Equal(t, int64(1), r.Version)
	require.NotEmpty(t, r.ID)

	_, err = store.CreateRegion(ctx, pool, rackcloud.Region{Meta: rackcloud.Meta{Name: "eu-west"}})
	require.ErrorIs(t, err, rackcloud.ErrConflict, "duplicate name")

	_, err = store.CreateRegion(ctx, pool, rackcloud.Region{Meta: rackcloud.Meta{Name: "Bad Name!"}})
	require.ErrorIs(t, err, rackcloud.ErrInvalid, "name check")

	got, err := store.GetRegion(ctx, pool, r.ID)
	require.NoError(t, err)
	require.Equal(t, "gold", got.Labels["tier"])

	_, err = store.GetRegion(ctx, pool, "00000000-0000-0000-0000-000000000000")
	require.ErrorIs(t, err, rackcloud.ErrNotFound)
	_, err = store.GetRegion(ctx, pool, "not-a-uuid")
	require.ErrorIs(t, err, rackcloud.ErrNotFound)

	got.Description = "first"
	upd, err := store.UpdateRegion(ctx, pool, got)
	require.NoError(t, err)
	require.Equal(t, int64(2), upd.Version)

	got.Description = "stale writer"
	_, err = store.UpdateRegion(ctx, pool, got) // still version 1
	require.ErrorIs(t, err, rackcloud.ErrConflict)

	require.ErrorIs(t, store.DeleteRegion(ctx, pool, r.ID, 1), rackcloud.ErrConflict)
	require.NoError(t, store.DeleteRegion(ctx, pool, r.ID, 2))
	require.ErrorIs(t, store.DeleteRegion(ctx, pool, r.ID, 0), rackcloud.ErrNotFound)
}

func TestListRegionsKeyset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	for _, n := range []string{"c", "a", "b", "d"} {
		_, err := store.CreateRegion(ctx, pool, rackcloud.Region{Meta: rackcloud.Meta{Name: n}})
		require.NoError(t, err)
	}
	page, err := store.ListRegions(ctx, pool, "", 3)
	require.NoError(t, err)
	require.Len(t, page, 3)
	require.Equal(t, "c", page[2].Name)
	page, err = store.ListRegions(ctx, pool, page[2].Name, 3)
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Equal(t, "d", page[0].Name)
}

func TestInTxRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	boom := errors.New("boom")
	err := store.InTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := store.CreateRegion(ctx, tx, rackcloud.Region{Meta: rackcloud.Meta{Name: "gone"}}); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	rs, err := store.ListRegions(ctx, pool, "", 10)
	require.NoError(t, err)
	require.Empty(t, rs)
}

// A failing migration must leave the schema exactly as it was: its DDL and
// its schema_migrations row are in one transaction.
func TestMigrateIsTransactional(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	bad := []store.Migration{
		{Version: 9001, Name: "half", SQL: `CREATE TABLE half_done (id int); SELECT no_such_function();`},
	}
	_, err := store.ApplyForTest(ctx, pool, bad)
	require.Error(t, err)
	require.Contains(t, err.Error(), "9001_half")
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'half_done'`).Scan(&n))
	require.Zero(t, n, "failed migration left a table behind")
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE version = 9001`).Scan(&n))
	require.Zero(t, n)

	// Re-running the real migrations on a migrated database is a no-op.
	applied, err := store.Migrate(ctx, pool)
	require.NoError(t, err)
	require.Empty(t, applied)
}

func TestMigrationNames(t *testing.T) {
	ms, err := store.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	for i := 1; i < len(ms); i++ {
		require.Less(t, ms[i-1].Version, ms[i].Version)
	}
	_, err = store.LoadForTest(fstest.MapFS{"migrations/x.sql": {Data: []byte("")}})
	require.Error(t, err)
	_, err = store.LoadForTest(fstest.MapFS{"migrations/0001_a.sql": {}, "migrations/0001_b.sql": {}})
	require.ErrorContains(t, err, "share version")
}

func TestRedact(t *testing.T) {
	require.Equal(t, "postgres://u:xxxxx@h/db", store.Redact("postgres://u:secret@h/db"))
	require.Equal(t, "postgres://u@h/db", store.Redact("postgres://u@h/db"))
	_, err := store.NewPool(context.Background(), "postgres://u:secret@h:notaport/db")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret")
}
