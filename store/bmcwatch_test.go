package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

func generation(t *testing.T, pool *pgxpool.Pool, id string) int64 {
	t.Helper()
	var g int64
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT bmc_generation FROM hosts WHERE id = $1`, id).Scan(&g))
	return g
}

// newBMCHost creates a host with an IPMI BMC and no password yet.
func newBMCHost(t *testing.T, pool *pgxpool.Pool) rackcloud.Host {
	t.Helper()
	h, err := store.CreateHost(context.Background(), pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "h1"},
		BMC: &rackcloud.BMC{Protocol: rackcloud.BMCIPMI, Address: "127.0.0.1:623", Username: "admin"}})
	require.NoError(t, err)
	return h
}

// TestBMCGenerationFollowsEveryCredentialWrite: every write that changes a
// host's BMC address, protocol, user name or password bumps its
// generation, whoever makes it (the trigger, not the callers, keeps it);
// writes that change none of them do not.
func TestBMCGenerationFollowsEveryCredentialWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	h := newBMCHost(t, pool)
	require.Equal(t, int64(0), generation(t, pool, h.ID))

	steps := []struct {
		name  string
		write func() error
		bumps bool
	}{
		{"password set", func() error { return store.SetHostBMCSecret(ctx, pool, h.ID, "rcs0:one") }, true},
		{"same password", func() error { return store.SetHostBMCSecret(ctx, pool, h.ID, "rcs0:one") }, false},
		{"address", func() error { return setBMC(ctx, pool, h.ID, func(b *rackcloud.BMC) { b.Address = "127.0.0.1:624" }) }, true},
		{"user", func() error { return setBMC(ctx, pool, h.ID, func(b *rackcloud.BMC) { b.Username = "root" }) }, true},
		{"protocol", func() error {
			return setBMC(ctx, pool, h.ID, func(b *rackcloud.BMC) { b.Protocol = rackcloud.BMCRedfish })
		}, true},
		{"same BMC again", func() error { return setBMC(ctx, pool, h.ID, func(*rackcloud.BMC) {}) }, false},
		{"host edit", func() error {
			cur, err := store.GetHost(ctx, pool, h.ID)
			if err != nil {
				return err
			}
			cur.Labels = rackcloud.Labels{"a": "b"}
			_, err = store.UpdateHost(ctx, pool, cur)
			return err
		}, false},
		{"raw SQL", func() error {
			_, err := pool.Exec(ctx, `UPDATE hosts SET bmc_username = 'other' WHERE id = $1`, h.ID)
			return err
		}, true},
	}
	for _, s := range steps {
		before := generation(t, pool, h.ID)
		require.NoError(t, s.write(), s.name)
		want := before
		if s.bumps {
			want++
		}
		require.Equal(t, want, generation(t, pool, h.ID), s.name)
	}
}

func setBMC(ctx context.Context, pool *pgxpool.Pool, id string, edit func(*rackcloud.BMC)) error {
	h, err := store.GetHost(ctx, pool, id)
	if err != nil {
		return err
	}
	edit(h.BMC)
	_, err = store.SetHostBMC(ctx, pool, h)
	return err
}

// TestRecordBMCObservation: an observation is written only under the
// generation it was made with; it never changes the host's version (ETag)
// or updated_at; an operator's edit does not put an old power state back.
func TestRecordBMCObservation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	h := newBMCHost(t, pool)
	require.NoError(t, store.SetHostBMCSecret(ctx, pool, h.ID, "rcs0:one"))
	targets, err := store.ListBMCTargets(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, []store.BMCTarget{{HostID: h.ID, Address: "127.0.0.1:623", Protocol: rackcloud.BMCIPMI,
		Username: "admin", Sealed: "rcs0:one", Generation: 1}}, targets)
	before, err := store.GetHost(ctx, pool, h.ID)
	require.NoError(t, err)

	on := store.BMCObservation{HostID: h.ID, Generation: 1, Power: rackcloud.PowerOn, Healthy: true}
	changed, err := store.RecordBMCObservation(ctx, pool, on)
	require.NoError(t, err)
	require.True(t, changed)
	changed, err = store.RecordBMCObservation(ctx, pool, on)
	require.NoError(t, err)
	require.False(t, changed, "the same observation again changes nothing")
	got, err := store.GetHost(ctx, pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.PowerOn, got.Power)
	require.True(t, got.BMC.Healthy)
	require.Equal(t, before.Version, got.Version, "an observed power change is not a new version (ETag)")
	require.Equal(t, before.UpdatedAt, got.UpdatedAt)

	// An operator edit made from a read taken before the poll: the power
	// it read is not written back.
	before.Labels = rackcloud.Labels{"rack": "r1"}
	edited, err := store.UpdateHost(ctx, pool, before)
	require.NoError(t, err, "the observation did not make the operator's version stale")
	require.Equal(t, rackcloud.PowerOn, edited.Power)

	// The credentials change: observations made with the old ones are
	// stale, those made with the new ones count.
	require.NoError(t, store.SetHostBMCSecret(ctx, pool, h.ID, "rcs0:two"))
	stale := store.BMCObservation{HostID: h.ID, Generation: 1, Power: rackcloud.PowerOff, Healthy: true}
	_, err = store.RecordBMCObservation(ctx, pool, stale)
	require.ErrorIs(t, err, store.ErrBMCChanged)
	got, err = store.GetHost(ctx, pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.PowerOn, got.Power, "the stale observation was not written")
	fresh := store.BMCObservation{HostID: h.ID, Generation: 2, Power: rackcloud.PowerUnknown, Error: "wrong user or password (IPMI, cipher suite 3)"}
	changed, err = store.RecordBMCObservation(ctx, pool, fresh)
	require.NoError(t, err)
	require.True(t, changed)
	got, err = store.GetHost(ctx, pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, "wrong user or password (IPMI, cipher suite 3)", got.BMC.Error)
	require.False(t, got.BMC.Healthy)
	require.Equal(t, edited.Version, got.Version)

	_, err = store.RecordBMCObservation(ctx, pool, store.BMCObservation{HostID: "00000000-0000-0000-0000-000000000000", Generation: 0})
	require.ErrorIs(t, err, store.ErrBMCChanged, "a host that is gone")
}

// TestListenBMCChanges: a committed credentials change is delivered with
// the host's ID; a wait that times out leaves the listener usable.
func TestListenBMCChanges(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := pgtest.DB(t)
	h := newBMCHost(t, pool)
	l, err := store.ListenBMCChanges(ctx, pool)
	require.NoError(t, err)
	defer l.Close()

	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = l.Next(wctx)
	wcancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "nothing changed")

	require.NoError(t, store.SetHostBMCSecret(ctx, pool, h.ID, "rcs0:one"))
	id, err := l.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, h.ID, id)
}

// TestWithLeaderLock: one holder at a time; the other returns at once
// without running; the lock passes on when the holder returns; a holder
// whose connection dies is told so through its context.
func TestWithLeaderLock(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool := pgtest.DB(t)
	const key = 4242
	const check = 50 * time.Millisecond

	inside, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		held, err := store.WithLeaderLock(ctx, pool, key, check, func(context.Context) error {
			close(inside)
			<-release
			return errors.New("done leading")
		})
		if !held {
			err = errors.New("first: not held")
		}
		first <- err
	}()
	<-inside
	held, err := store.WithLeaderLock(ctx, pool, key, check, func(context.Context) error {
		t.Error("ran while another held the lock")
		return nil
	})
	require.NoError(t, err)
	require.False(t, held)
	close(release)
	require.EqualError(t, <-first, "done leading", "fn's error is returned")

	// Now this one leads; its backend is killed from outside.
	var cause error
	held, err = store.WithLeaderLock(ctx, pool, key, check, func(fctx context.Context) error {
		var pid int
		if err := pool.QueryRow(ctx, `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted`, key).Scan(&pid); err != nil {
			return err
		}
		if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			return err
		}
		<-fctx.Done()
		cause = context.Cause(fctx)
		return fctx.Err()
	})
	require.True(t, held)
	require.ErrorContains(t, err, "the leader lock's connection is lost")
	require.ErrorContains(t, cause, "the leader lock's connection is lost")

	// The lock was lost with its session: another can take it.
	labtest.Eventually(t, 10*time.Second, 20*time.Millisecond, "the lock free again", func() (bool, string) {
		held, err := store.WithLeaderLock(ctx, pool, key, check, func(context.Context) error { return nil })
		return held && err == nil, ""
	})
}
